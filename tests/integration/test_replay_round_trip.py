"""A run file replayed onto a real broker and written again by the real file writer: the
new file holds the same pulses (event_id and event_time_offset per pulse, the same number
of pulses, times shifted by one constant), the same monitor events, framelog and totals,
and the same log values.

The first file is made as the writer makes one from ISIS's stream (pu00, ev44 chunks, three
periods, vetoed frames, a monitor) plus a sample-environment log and a run log, through a
WriteJob's own dispatch (tests/unit/test_icp_file_modules.py); the replay goes at speed 0
into fresh topics, and the writer service runs as run control's writer does."""

from __future__ import annotations

import json
import time
import uuid

import h5py
import numpy as np
import pytest
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.kafka_client import KafkaSettings, make_producer
from datastream.run_window import Window
from datastream.streams import LogStream, Stream
from datastream.time_channels import TimeChannels
from filewriter.commands import StartJob
from filewriter.job import JobSettings, WriteJob
from ioc.nexus_template import RunMetadata, nexus_structure
from replay.producer import Replayer
from replay.producer import Window as ReplayWindow
from replay.run_file import open_run_file
from replay.run_start import RunIdentity
from tests.integration.conftest import file_written
from tests.unit.test_icp_file_modules import DETECTORS, MONITOR, SPECTRA, TCB, isis_stream

pytestmark = pytest.mark.integration
MS = 1_000_000
SECOND = 1_000_000_000
TOPIC, SE_TOPIC, RUN_LOG_TOPIC = "TST_events", "TST_sampleEnv", "TST_runLog"
LOGS = [LogStream(Stream("temp", "ca", "f144", SE_TOPIC), "temp", "K", False, "double")]
RUN_LOGS = [LogStream(Stream("goodframes", "ca", "f144", RUN_LOG_TOPIC), "goodframes", "",
                      False, "int32")]


def original_file(tmp_path):
    """The run as the writer writes it (run control's template with its logs, and the
    monitor's own event stream)."""
    stream = isis_stream()
    structure = nexus_structure(RunMetadata("TST", 7, "a title", ("Ada",), "1234"), TOPIC,
                                "DAE", LOGS, RUN_LOGS)
    structure["children"][0]["children"].append(
        {"type": "group", "name": MONITOR, "attributes": [{"name": "NX_class",
                                                          "values": "NXmonitor"}],
         "children": [{"module": "ev44", "config": {"topic": TOPIC, "source": MONITOR}}]})
    command = StartJob(job_id=str(uuid.uuid4()), filename="TST00000007.nxs",
                       start_ns=stream.start_ns, stop_ns=stream.stop_ns,
                       nexus_structure=structure, control_topic="", run_name="00000007",
                       instrument="TST", service_id="",
                       metadata=json.dumps({"title": "a title", "tcb": TCB}),
                       spectrum_map=(SPECTRA, DETECTORS))
    job = WriteJob(command, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    job.open()
    job.request_stop(stream.stop_ns)
    window = Window(stream.start_ns, stream.stop_ns)
    logs = [(SE_TOPIC, serialise_f144("temp", 290.0 + k, stream.start_ns + k * 700 * MS))
            for k in (-3, 0, 1, 2)]
    logs += [(RUN_LOG_TOPIC, serialise_f144("goodframes", np.int32(10 * k),
                                            stream.start_ns + k * SECOND)) for k in (0, 1, 2)]
    for offset, (topic, payload) in enumerate(
            [*logs, *((TOPIC, p) for p in stream.payloads)]):
        job._dispatch(topic, payload, window, offset)
    job._close_file()
    return job.path


def per_pulse(group: h5py.Group) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    tz = group["event_time_zero"][()].astype(np.int64)
    index = [*group["event_index"][()].tolist(), len(group["event_id"])]
    ids = [group["event_id"][index[i]:index[i + 1]] for i in range(len(tz))]
    tofs = [group["event_time_offset"][index[i]:index[i + 1]] for i in range(len(tz))]
    return tz, ids, tofs


def assert_same_events(old: h5py.Group, new: h5py.Group) -> None:
    old_tz, old_ids, old_tofs = per_pulse(old)
    new_tz, new_ids, new_tofs = per_pulse(new)
    assert len(new_tz) == len(old_tz) > 0
    shift = new_tz - old_tz
    assert (shift == shift[0]).all()  # one constant
    for a, b in zip(old_ids, new_ids, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(old_tofs, new_tofs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_replayed_run_is_written_again_as_it_was(kafka, topics, writer, tmp_path):
    original = original_file(tmp_path)
    producer = make_producer(kafka)
    replayer = Replayer(producer, topics, "DAE", speed=0.0, max_lead_s=1800.0,
                        broker=kafka.bootstrap, progress_interval_s=60)
    identity = RunIdentity(topics.instrument, 8, str(uuid.uuid4()))
    start_ms = time.time_ns() // MS
    with open_run_file(original) as run:
        sent = replayer.replay(run, identity, start_ms, ReplayWindow(),
                               run.time_channels() or TimeChannels())
    assert sent.pulses == 30
    done = file_written(kafka, topics.run_info, lambda w: w.job_id == identity.job_id,
                        "the replayed run's file")
    assert not done.error_encountered, done.message
    with h5py.File(original) as f_old, h5py.File(writer / identity.filename) as f_new:
        old, new = f_old["raw_data_1"], f_new["raw_data_1"]
        assert new["run_number"][()] == 8 and new["title"][()] == b"a title"
        assert_same_events(old["detector_1_events"], new["detector_1_events"])
        assert_same_events(old[MONITOR], new[MONITOR])
        new_tz = new["detector_1_events/event_time_zero"][0].astype(np.int64)
        assert new_tz - old["detector_1_events/event_time_zero"][0].astype(np.int64) == (
            start_ms * MS - run.start_ns)
        for name in ("period_log", "proton_charge", "vetos", "events_log", "good_frame_log"):
            np.testing.assert_array_equal(old[f"framelog/{name}/value"][()],
                                          new[f"framelog/{name}/value"][()])
            np.testing.assert_allclose(old[f"framelog/{name}/time"][()],
                                       new[f"framelog/{name}/time"][()], atol=1e-9)
        for name in ("good_frames", "raw_frames", "total_counts", "proton_charge"):
            assert old[name][()] == new[name][()]
        np.testing.assert_array_equal(old["detector_1/counts"][()],
                                      new["detector_1/counts"][()])
        for path in ("selog/temp/value_log", "runlog/goodframes"):
            np.testing.assert_array_equal(old[f"{path}/value"][()], new[f"{path}/value"][()])
            np.testing.assert_allclose(old[f"{path}/time"][()], new[f"{path}/time"][()],
                                       atol=1e-6)
        assert old["selog/temp/value_log/value"].attrs["units"] == "K"
        assert new["selog/temp/value_log/value"].attrs["units"] == "K"


def test_the_command_line_replays_a_file_and_refuses_a_bad_one(kafka, topics, writer,
                                                                tmp_path):
    """`datastream replay FILE` as a user types it, its own process on the real broker: the
    run is written again; a file that is not a run file is refused in one line, exit 2."""
    import subprocess
    import sys

    original = original_file(tmp_path)
    command = [sys.executable, "-m", "launcher", "replay", "--instrument",
               topics.instrument, "--broker", kafka.bootstrap, "--data-dir", str(tmp_path),
               "--speed", "0", "--run-number", "9"]
    done = subprocess.run([*command, str(original)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    wrdn = file_written(kafka, topics.run_info, lambda w: w.file_name.endswith("00000009.nxs"),
                        "the replayed run's file")
    assert not wrdn.error_encountered, wrdn.message
    with h5py.File(original) as f_old, h5py.File(writer / wrdn.file_name) as f_new:
        assert_same_events(f_old["raw_data_1/detector_1_events"],
                           f_new["raw_data_1/detector_1_events"])
    bad = tmp_path / "not_a_run.nxs"
    bad.write_bytes(b"not HDF5 at all")
    refused = subprocess.run([*command, str(bad)], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("replay:") and "Traceback" not in refused.stderr
