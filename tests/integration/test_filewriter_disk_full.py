"""A file writer whose disk fills up mid-run: the job ends with a wrdn error that says so, the
file holds what was written before (no pulse without its data) and opens in any reader, the
writer lets go of it, and takes the next job. The writer runs as its own process with a
file-size limit (RLIMIT_FSIZE, writes past it fail with EFBIG as on a full disk), on the real
broker; tests/faults has the same on a real, small filesystem."""

from __future__ import annotations

import resource
import signal
import time
import uuid

import h5py
import numpy as np
import pytest
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import MS, frame, start_run, wait_wrdn

pytestmark = pytest.mark.integration
LIMIT_BYTES = 24 * 1024 * 1024


def _limit_file_size() -> None:
    # EFBIG instead of the default SIGXFSZ kill: what a full disk looks like to the writer
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def _open_files(pid: int, path) -> list[str]:
    import os

    fds = f"/proc/{pid}/fd"
    return [fd for fd in os.listdir(fds) if os.path.realpath(f"{fds}/{fd}") == str(path)]


def test_a_full_disk_ends_the_job_with_an_error_and_the_next_job_runs(kafka, topics, tmp_path):
    producer = make_producer(kafka)
    with writer_process(kafka, topics, tmp_path, preexec_fn=_limit_file_size) as writer:
        now_ms = time.time_ns() // MS
        start_ms, stop_ms = now_ms - 12000, now_ms - 1000
        # 100 frames of 50k events: 40 MB of event data, more than the "disk" holds
        for k in range(100):
            t = start_ms * MS + k * 100 * MS
            producer.produce(topics.events, frame(t, 50_000, 50_000 * k), timestamp=t // MS)
        producer.flush(30)
        big = str(uuid.uuid4())
        start_run(producer, topics, start_ms, big, "FULL00000001.nxs", stop_ms=stop_ms)
        done = wait_wrdn(kafka, topics.run_info, big, timeout=60)
        assert done.error_encountered
        assert "disk full" in done.message, done.message
        with h5py.File(tmp_path / "FULL00000001.nxs", "r") as f:  # a plain reader opens it
            events = f["raw_data_1/detector_1_events"]
            tz, index = events["event_time_zero"][:], events["event_index"][:]
            assert len(tz) > 0 and np.all(tz > 0)  # no pulse grown before its data
            assert len(index) == len(tz) and index[-1] < len(events["event_id"])
            assert len(events["event_id"]) == 50_000 * len(tz)
        assert not _open_files(writer.pid, tmp_path / "FULL00000001.nxs")

        small = str(uuid.uuid4())
        start_run(producer, topics, start_ms, small, "FULL00000002.nxs")
        deliver(producer, topics.run_info, serialise_6s4t(small, command_id=str(uuid.uuid4()),
                                                          stop_time=start_ms + 50))
        done = wait_wrdn(kafka, topics.run_info, small, timeout=60)
        assert not done.error_encountered, done.message
        with h5py.File(tmp_path / "FULL00000002.nxs") as f:
            tz = f["raw_data_1/detector_1_events/event_time_zero"][:]
            assert tz.tolist() == [start_ms * MS]
            assert np.all(f["raw_data_1/detector_1_events/event_id"][:] < 50_000)
        assert writer.poll() is None  # still serving
