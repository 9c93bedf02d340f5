"""Replay's reading of the three layouts into pulses: exact times of flight in ns and ids
per pulse, pulse times in ns since the epoch whatever the file's units and offsets, the
framelog per pulse (by position or by time), logs, and --from/--to windows."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from replay.errors import ReplayError
from replay.producer import Window
from replay.run_file import open_run_file
from replay.timeline import Frame, LogUpdate, timeline
from tests.unit.test_replay_files import START_NS, isis_file, k2n_file, project_file


def frames_of(run, lo=None, hi=None) -> list[Frame]:
    lo = run.start_ns if lo is None else lo
    hi = run.stop_ns if hi is None else hi
    return [item for item in timeline(run, lo, hi) if isinstance(item, Frame)]


def test_this_project_s_file_pulse_by_pulse(tmp_path):
    want = project_file(tmp_path / "run.nxs")
    with open_run_file(tmp_path / "run.nxs") as run:
        assert run.instrument == "TST" and run.run_number == 7 and run.title == "a title"
        assert run.users == ("Ada",) and run.rb_number == "1234"
        assert run.start_ns == START_NS
        assert [g.source for g in run.monitors] == ["monitor_1"]
        frames = frames_of(run)
        assert [f.time_ns for f in frames] == want["times"].tolist()
        for frame, (tof, ids), (m_tof, m_ids) in zip(frames, want["det"], want["mon"],
                                                     strict=True):
            (det,), (mon,) = frame.detector, frame.monitors
            assert det.time_of_flight.dtype == np.int32 and det.pixel_id.dtype == np.int32
            np.testing.assert_array_equal(det.time_of_flight, tof)
            np.testing.assert_array_equal(det.pixel_id, ids)
            np.testing.assert_array_equal(mon.time_of_flight, m_tof)
            np.testing.assert_array_equal(mon.pixel_id, m_ids)
        # period_log from 1 in the file, from 0 on the stream; charge and vetos per frame
        assert [run.frames.of(f.framelog_row) for f in frames] == [
            (k % 3, pytest.approx(0.5 + 0.01 * k), 64 if k == 4 else 0) for k in range(6)]
        assert {s.name: s.topic_suffix for s in run.logs} == {"temp": "sampleEnv",
                                                             "goodframes": "runLog"}
        assert run.periods() == 3


def test_isis_file_microseconds_and_seconds_after_an_offset(tmp_path):
    want = isis_file(tmp_path / "isis.nxs")
    with open_run_file(tmp_path / "isis.nxs") as run:
        assert run.instrument == "WISH" and run.run_number == 12345
        assert run.start_ns == want["start"]
        frames = frames_of(run)
        assert [f.time_ns for f in frames] == want["times"].tolist()
        for frame, (tof, ids) in zip(frames, want["det"], strict=True):
            np.testing.assert_array_equal(frame.detector[0].time_of_flight, tof)
            np.testing.assert_array_equal(frame.detector[0].pixel_id, ids)
        # the framelog has a frame the events do not: matched by time, not position
        assert [run.frames.of(f.framelog_row)[0] for f in frames] == [1] * 5


def test_kafka_to_nexus_banks_merge_into_one_frame_per_pulse(tmp_path):
    want = k2n_file(tmp_path / "k2n.nxs")
    with open_run_file(tmp_path / "k2n.nxs") as run:
        assert run.instrument == "DREAM" and run.run_number is None
        assert len(run.detectors) == 2 and not run.monitors
        frames = frames_of(run)
        assert [f.time_ns for f in frames] == want["times"].tolist()
        for frame, a, b in zip(frames, want["a"], want["b"], strict=True):
            assert [p.source for p in frame.detector] == ["events", "events"]
            np.testing.assert_array_equal(frame.detector[0].time_of_flight, a[0])
            np.testing.assert_array_equal(frame.detector[1].pixel_id, b[1])
        (speed,) = run.logs
        assert speed.times_ns.tolist() == [START_NS + 10, START_NS + 150_000_000]


def test_logs_interleave_by_time_with_the_value_before_the_window(tmp_path):
    project_file(tmp_path / "run.nxs")
    with open_run_file(tmp_path / "run.nxs") as run:
        items = list(timeline(run, run.start_ns, run.stop_ns))
        times = [i.time_ns for i in items]
        assert times == sorted(times)
        temps = [(i.time_ns - START_NS, float(i.value)) for i in items
                 if isinstance(i, LogUpdate) and i.source == "temp"]
        # the value before the start (-1 s) goes too: the file's value at the run start
        assert temps == [(-1_000_000_000, 290.0), (250_000_000, 291.0), (350_000_000, 292.5)]
        # --from 0.3: the last value before it, then its own
        lo = run.start_ns + 300_000_000
        temps = [float(i.value) for i in timeline(run, lo, run.stop_ns)
                 if isinstance(i, LogUpdate) and i.source == "temp"]
        assert temps == [291.0, 292.5]


def test_from_and_to_select_the_pulses_in_between(tmp_path):
    want = project_file(tmp_path / "run.nxs")
    with open_run_file(tmp_path / "run.nxs") as run:
        lo, hi = Window(0.1, 0.4).bounds_ns(run)
        assert (lo, hi) == (START_NS + 100_000_000, START_NS + 400_000_000)
        # pulses at 5, 105, 205, 305, 405 ms: 105..305 lie in [100, 400)
        assert [f.time_ns for f in frames_of(run, lo, hi)] == want["times"][1:4].tolist()
        assert Window(0.0, None).bounds_ns(run) == (run.start_ns, run.stop_ns)
        with pytest.raises(ReplayError, match="at or past its end"):
            Window(50.0, None).bounds_ns(run)


def test_chunks_smaller_than_a_pulse_still_give_whole_pulses(tmp_path):
    want = project_file(tmp_path / "run.nxs")
    with open_run_file(tmp_path / "run.nxs") as run:
        got = list(run.detectors[0].pulses(run.start_ns, run.stop_ns, chunk_events=4))
        assert [len(p.time_of_flight) for p in got] == [len(t) for t, _ in want["det"]]


# -- bad input: a sentence, not a traceback --
def test_a_missing_file(tmp_path):
    with pytest.raises(ReplayError, match="no such file"):
        open_run_file(tmp_path / "nope.nxs")


def test_not_hdf5(tmp_path):
    (tmp_path / "x.nxs").write_text("hello")
    with pytest.raises(ReplayError, match="not an HDF5 file"):
        open_run_file(tmp_path / "x.nxs")


def test_no_event_data(tmp_path):
    with h5py.File(tmp_path / "h.nxs", "w") as f:
        f.create_group("raw_data_1").attrs["NX_class"] = "NXentry"
    with pytest.raises(ReplayError, match="no NXevent_data"):
        open_run_file(tmp_path / "h.nxs")


@pytest.mark.parametrize("index, match", [([0, 5, 3, 10, 12, 20], "inconsistent at pulse 2"),
                                          ([0, 5, 8, 10, 12, 10_000], "inconsistent"),
                                          ([0, 5, 8], "3 event_index entries for 6")])
def test_inconsistent_event_index(tmp_path, index, match):
    project_file(tmp_path / "run.nxs")
    with h5py.File(tmp_path / "run.nxs", "a") as f:
        del f["raw_data_1/detector_1_events/event_index"]
        f["raw_data_1/detector_1_events/event_index"] = np.array(index, np.int64)
    with pytest.raises(ReplayError, match=match):
        open_run_file(tmp_path / "run.nxs")


def test_non_finite_pulse_times(tmp_path):
    isis_file(tmp_path / "isis.nxs")
    with h5py.File(tmp_path / "isis.nxs", "a") as f:
        f["raw_data_1/detector_1_events/event_time_zero"][2] = np.nan
    with pytest.raises(ReplayError, match="non-finite time nan at row 2"):
        open_run_file(tmp_path / "isis.nxs")


def test_non_finite_times_of_flight_are_found_as_they_are_read(tmp_path):
    isis_file(tmp_path / "isis.nxs")
    with h5py.File(tmp_path / "isis.nxs", "a") as f:
        f["raw_data_1/detector_1_events/event_time_offset"][4] = np.inf
    with open_run_file(tmp_path / "isis.nxs") as run, pytest.raises(
            ReplayError, match="event_time_offset: non-finite time inf"):
        frames_of(run)


def test_times_without_units_are_refused(tmp_path):
    project_file(tmp_path / "run.nxs")
    with h5py.File(tmp_path / "run.nxs", "a") as f:
        del f["raw_data_1/detector_1_events/event_time_offset"].attrs["units"]
    with pytest.raises(ReplayError, match="no units attribute"):
        open_run_file(tmp_path / "run.nxs")
