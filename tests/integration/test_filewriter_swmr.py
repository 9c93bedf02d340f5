"""Files are written SWMR: readers (h5py, scippnexus) open them while they grow, and a writer
killed mid-run leaves a file readable (opened with swmr=True) up to its last flush, and
`datastream h5clear` makes it readable by any reader."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid

import h5py
import pytest
import scippnexus as snx

from datastream.kafka_client import make_producer
from tests.conftest import wait_until
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import MS, frame, start_run

pytestmark = pytest.mark.integration
EVENTS_PER_FRAME = 1000


def _frames(producer, topic: str, stop: threading.Event) -> None:
    k = 0
    while not stop.is_set():
        t = time.time_ns()
        producer.produce(topic, frame(t, EVENTS_PER_FRAME, EVENTS_PER_FRAME * k),
                         timestamp=t // MS)
        producer.poll(0)
        k += 1
        time.sleep(0.05)
    producer.flush(10)


def _events(path) -> int:
    with h5py.File(path, "r", swmr=True) as f:
        return len(f["raw_data_1/detector_1_events/event_id"])


def test_readers_follow_a_growing_file_and_a_killed_writer_leaves_it_readable(
        kafka, topics, tmp_path):
    producer = make_producer(kafka)
    stop_frames = threading.Event()
    feeder = threading.Thread(target=_frames, args=(producer, topics.events, stop_frames))
    path = tmp_path / "SWMR00000001.nxs"
    with writer_process(kafka, topics, tmp_path) as writer:
        feeder.start()
        try:
            start_run(producer, topics, time.time_ns() // MS, str(uuid.uuid4()), path.name)
            wait_until(lambda: path.exists() and _events(path) > 0, 30, "events in the file")
            first = _events(path)
            wait_until(lambda: _events(path) > first, 30, "the file to grow")
            # a reader nobody here wrote, while the writer holds the file open
            with h5py.File(path, "r", swmr=True) as h5, snx.File(h5) as f:
                events = f["raw_data_1/detector_1_events"][...]
                assert events.bins.size().sum().value >= first
                assert events.bins.size().sum().value % EVENTS_PER_FRAME == 0  # whole pulses
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
        finally:
            stop_frames.set()
            feeder.join(20)
    # what was flushed before the kill is there and reads back (the last flush may have been
    # cut between datasets, so only what the reader saw before the kill is certain)
    with h5py.File(path, "r", swmr=True) as f:
        events = f["raw_data_1/detector_1_events"]
        assert len(events["event_id"][:]) >= first
        assert len(events["event_time_offset"][:]) >= first
        assert len(events["event_time_zero"][:]) >= first // EVENTS_PER_FRAME
        assert len(events["event_index"][:]) >= first // EVENTS_PER_FRAME
        assert f["raw_data_1/title"][()] == b"a title"
    # a reader that does not ask for SWMR refuses it until the flags are cleared
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")
    cleared = subprocess.run([sys.executable, "-m", "launcher", "h5clear", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared" in cleared.stdout
    with snx.File(path) as f:
        assert f["raw_data_1/detector_1_events"][...].bins.size().sum().value >= first
