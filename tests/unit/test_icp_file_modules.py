"""The ISIS writer modules fed an ISIS stream (pu00 then ev44 chunks per frame, 3 periods,
vetoed frames, a monitor) through a real WriteJob's dispatch, no broker: the histograms are
numpy's histograms of the file's own events of good frames, the framelog lines up with
event_time_zero, and the totals are the FrameBook's."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.frames import FrameBook
from datastream.kafka_client import KafkaSettings
from datastream.run_window import Window
from datastream.schemas.pu00 import deserialise_pu00, serialise_pu00
from filewriter.commands import StartJob
from filewriter.job import JobSettings, WriteJob
from ioc.nexus_template import RunMetadata, nexus_structure

MS = 1_000_000
START_NS = 1_700_000_000_000 * MS
FRAME_NS = 100 * MS
TOPIC = "TST_events"
TCB = {"tof_min_ns": 0.0, "tof_max_ns": 100_000.0, "channels": 50, "logarithmic": False}
DETECTORS = np.arange(1, 49)
SPECTRA = 1 + (DETECTORS - 1) // 2  # two detectors a spectrum: a real map, not 1:1
MONITOR = "mon1"


@dataclass
class Stream:
    payloads: list[bytes]
    times_ns: list[int]  # each message's frame time (its Kafka timestamp)
    start_ns: int
    stop_ns: int


def isis_stream(frames: int = 30, chunk: int = 7, seed: int = 1,
                start_ns: int = START_NS) -> Stream:
    """pu00 then ev44 chunks for each frame; frame k is in period k % 3, frames 3, 10, 17,
    ... are vetoed (and some of them still send events: they are written, not binned); a
    frame before the start and one at the stop belong to no run."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    times: list[int] = []
    t = start_ns
    mid = 0
    for k in range(-1, frames + 1):
        times += [t] * (len(out) - len(times))  # the frame before's messages
        t = start_ns + k * FRAME_NS + 5 * MS
        vetos = (1 << 6) if k % 7 == 3 else 0
        mid += 1
        out.append(serialise_pu00("DAE", mid, t, vetos, k % 3, np.float32(0.5 + 0.01 * k)))
        if vetos and k % 14 != 3:
            continue  # as our DAE: a vetoed frame is its pu00 alone
        n = int(rng.integers(15, 40))
        pixels = rng.integers(0, 51, n).astype(np.int32)  # 0, 49, 50: no spectrum
        tof = np.sort(rng.integers(0, 120_000, n)).astype(np.int32)  # past the TCB too
        for s in range(0, n, chunk):
            mid += 1
            out.append(serialise_ev44("DAE", mid, np.array([t], np.int64),
                                      np.zeros(1, np.int32), tof[s:s + chunk],
                                      pixels[s:s + chunk]))
        if not vetos:
            mid += 1
            m_tof = rng.integers(0, 100_000, 5).astype(np.int32)
            out.append(serialise_ev44(MONITOR, mid, np.array([t], np.int64),
                                      np.zeros(1, np.int32), m_tof,
                                      np.full(5, 999, np.int32)))
    times += [t] * (len(out) - len(times))
    return Stream(out, times, start_ns, start_ns + frames * FRAME_NS)


def structure(instrument: str = "TST", topic: str = TOPIC) -> dict:
    """The run control's template, with the monitor as isis_histogram's."""
    s = nexus_structure(RunMetadata(instrument, 7, "a title", ("Ada",), "1234"), topic, "DAE",
                        [])
    entry = s["children"][0]["children"]
    histogram = next(c for c in entry if c.get("module") == "isis_histogram")
    histogram["config"]["monitors"] = [{"source": MONITOR, "detector_id": 100001,
                                        "name": "monitor_1"}]
    return s


def command(filename: str = "RUN.nxs", start_ns: int = START_NS, stop_ns: int | None = None,
            topic: str = TOPIC, instrument: str = "TST") -> StartJob:
    return StartJob(job_id=str(uuid.uuid4()), filename=filename, start_ns=start_ns,
                    stop_ns=stop_ns, nexus_structure=structure(instrument, topic),
                    control_topic="", run_name="00000007", instrument=instrument,
                    service_id="", metadata=json.dumps({"title": "t", "rb_number": "1234",
                                                        "tcb": TCB}),
                    spectrum_map=(SPECTRA, DETECTORS))


def write_file(tmp_path: Path, stream: Stream) -> tuple[Path, list[str]]:
    job = WriteJob(command(), JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    warnings = job.open()
    job.request_stop(stream.stop_ns)
    window = Window(START_NS, stream.stop_ns)
    for offset, payload in enumerate(stream.payloads):
        job._dispatch(TOPIC, payload, window, offset)
    job._close_file()
    return job.path, warnings


def expected_book(stream: Stream) -> FrameBook:
    book = FrameBook(Window(stream.start_ns, stream.stop_ns))
    for payload in stream.payloads:
        if payload[4:8] == b"pu00":
            book.add_pulse(deserialise_pu00(payload))
    return book


@pytest.fixture(params=["in the binning thread", "shared with the job's thread"])
def binning(request, monkeypatch):
    """How the histogram is binned: all in its thread, or with that thread's queue taken
    as full for every other task, so the job's thread bins those itself (the two tallies
    added up at close). Yields the tasks' event counts the job's thread binned."""
    from filewriter.modules import isis_histogram

    here: list[int] = []
    if request.param.startswith("shared"):
        turn = itertools.count()
        offer, bin_here = isis_histogram._Binner.offer, isis_histogram.IsisHistogramWriter._bin_here
        monkeypatch.setattr(isis_histogram._Binner, "offer",
                            lambda self, task: next(turn) % 2 == 0 and offer(self, task))

        def counted(self, task):
            here.append(len(task.tof))
            bin_here(self, task)

        monkeypatch.setattr(isis_histogram.IsisHistogramWriter, "_bin_here", counted)
    yield here
    assert bool(here) == request.param.startswith("shared")


def test_histograms_are_numpy_s_of_the_file_s_own_good_frame_events(tmp_path, binning):
    path, warnings = write_file(tmp_path, isis_stream())
    assert warnings == []
    edges = np.linspace(TCB["tof_min_ns"], TCB["tof_max_ns"], TCB["channels"] + 1)
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        ev = e["detector_1_events"]
        index = [*ev["event_index"][:].tolist(), len(ev["event_id"])]
        periods = e["framelog/period_log/value"][:] - 1
        good = e["framelog/vetos/value"][:] == 0
        counts = e["detector_1/counts"][:]
        assert counts.dtype == np.int32 and counts.shape == (3, 24, 50)
        assert e["detector_1/spectrum_index"][:].tolist() == list(range(1, 25))
        row_of = dict(zip(DETECTORS.tolist(), (SPECTRA - 1).tolist(), strict=True))
        for p in range(3):
            rows, tofs = [], []
            for i in np.flatnonzero((periods == p) & good):
                ids = ev["event_id"][index[i]:index[i + 1]]
                keep = np.isin(ids, DETECTORS)
                rows += [row_of[d] for d in ids[keep]]
                tofs += ev["event_time_offset"][index[i]:index[i + 1]][keep].tolist()
            want, _, _ = np.histogram2d(rows, tofs, bins=(np.arange(25), edges))
            assert np.array_equal(counts[p], want), f"period {p + 1}"
            assert counts[p].sum() > 0
        monitor = e["monitor_1/data"][:]
        assert monitor.shape == (3, 1, 50) and monitor.dtype == np.int32
        assert monitor.sum() == 5 * int(good.sum())
        assert e["monitor_1/spectrum_index"][:].tolist() == [25]


def test_one_entry_per_frame_and_the_framelog_lines_up(tmp_path):
    stream = isis_stream()
    path, _ = write_file(tmp_path, stream)
    book = expected_book(stream)
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        tz = e["detector_1_events/event_time_zero"][:]
        # chunks merged: one entry a frame, vetoed frames too, in order
        assert len(tz) == book.totals.raw_frames == 30
        assert np.all(np.diff(tz.astype(np.int64)) > 0)
        for name in ("proton_charge", "period_log", "good_frame_log", "raw_frames", "vetos",
                     "events_log"):
            log = e[f"framelog/{name}"]
            assert log.attrs["NX_class"] == "NXlog"
            assert len(log["value"]) == len(tz), name
            seconds = (tz.astype(np.int64) - START_NS) / 1e9
            assert np.allclose(log["time"][:], seconds), name
        assert e["framelog/period_log/value"][:].tolist() == [k % 3 + 1 for k in range(30)]
        sizes = np.diff(np.append(e["detector_1_events/event_index"][:],
                                  len(e["detector_1_events/event_id"])))
        assert e["framelog/events_log/value"][:].tolist() == sizes.tolist()
        assert e["framelog/raw_frames/value"][-1] == 30
        assert e["framelog/good_frame_log/value"][-1] == book.totals.good_frames


def test_totals_are_the_frame_book_s(tmp_path):
    stream = isis_stream()
    path, _ = write_file(tmp_path, stream)
    totals = expected_book(stream).totals
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        assert e["good_frames"][0] == totals.good_frames < totals.raw_frames == e["raw_frames"][0]
        assert np.isclose(e["proton_charge"][0], totals.good_uah)
        assert np.isclose(e["proton_charge_raw"][0], totals.raw_uah)
        assert e["periods/number"][0] == 3
        assert e["periods/good_frames"][:].tolist() == totals.per_period("good_frames", 3)
        assert e["periods/raw_frames"][:].tolist() == totals.per_period("raw_frames", 3)
        assert np.allclose(e["periods/proton_charge"][:], totals.per_period("good_uah", 3))
        # the events of good frames, in or out of the TCB and map
        framelog_good = e["framelog/vetos/value"][:] == 0
        assert e["total_counts"][0] == e["framelog/events_log/value"][framelog_good].sum()
        assert e["periods/total_counts"][:].sum() == e["total_counts"][0]
        assert e["duration"][0] == np.float32(3.0)
        assert e["isis_vms_compat/IRPB"][9] == totals.good_frames
        assert e["isis_vms_compat/IRPB"][21] == 1234


def test_a_histogram_over_the_bound_is_refused_and_the_file_still_written(tmp_path):
    cmd = command()
    entry = cmd.nexus_structure["children"][0]["children"]
    next(c for c in entry if c.get("module") == "isis_histogram")["config"]["max_bytes"] = 100
    job = WriteJob(cmd, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    warnings = job.open()
    assert any("isis_histogram refused" in w and "max_bytes" in w for w in warnings)
    stream = isis_stream(frames=5)
    job.request_stop(stream.stop_ns)
    for offset, payload in enumerate(stream.payloads):
        job._dispatch(TOPIC, payload, Window(START_NS, stream.stop_ns), offset)
    job._close_file()
    with h5py.File(job.path) as f:
        assert "detector_1" not in f["raw_data_1"]
        assert len(f["raw_data_1/detector_1_events/event_time_zero"]) == 5
        assert f["raw_data_1/raw_frames"][0] == 5


def test_the_job_thread_bins_a_second_copy_only_within_max_bytes(tmp_path, monkeypatch):
    """With the binning thread's queue full, the job's thread bins into a tally of its own
    only where max_bytes holds it beside every period the run declared (3 here, of 6,000
    bytes each): with room for 4 periods it takes one period's copy and no more, and waits
    for the binning thread otherwise; no period is refused for it, every count is kept."""
    from filewriter.modules import isis_histogram

    monkeypatch.setattr(isis_histogram._Binner, "offer", lambda self, task: False)
    put = isis_histogram._Binner.put
    waited: list[int] = []
    monkeypatch.setattr(isis_histogram._Binner, "put",
                        lambda self, task: waited.append(task.period) or put(self, task))
    totals = {}
    for max_bytes in (4 * 6000, 3 * 6000, 1 << 30):
        cmd = command(filename=f"RUN{max_bytes}.nxs")
        entry = cmd.nexus_structure["children"][0]["children"]
        config = next(c for c in entry if c.get("module") == "isis_histogram")["config"]
        config["max_bytes"], config["periods"] = max_bytes, 3
        job = WriteJob(cmd, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
        assert job.open() == []
        stream = isis_stream()
        job.request_stop(stream.stop_ns)
        for offset, payload in enumerate(stream.payloads):
            job._dispatch(TOPIC, payload, Window(START_NS, stream.stop_ns), offset)
        (module,) = {id(w): w for ws in job._writers.values() for w in ws
                     if isinstance(w, isis_histogram.IsisHistogramWriter)}.values()
        held = module._job_tally.detector if module._job_tally is not None else {}
        assert len(held) == {4 * 6000: 1, 3 * 6000: 0, 1 << 30: 3}[max_bytes]
        assert bool(waited) == (max_bytes != 1 << 30)
        waited.clear()
        job._close_file()
        with h5py.File(job.path) as f:
            totals[max_bytes] = f["raw_data_1/detector_1/counts"][:]
        assert module.counts["histogram_refused_events"] == 0
    assert np.array_equal(totals[4 * 6000], totals[1 << 30])
    assert np.array_equal(totals[3 * 6000], totals[1 << 30])


def test_counts_kept_a_byte_a_bin_come_out_whole_and_clipped():
    from filewriter.modules.isis_histogram import _Counts

    counts = _Counts.zeros(3, 4)
    counts.low[1, 2], counts.high_bins[1, 2] = 7, 3  # 3 * 256 + 7
    counts.low[2, 0], counts.high_bins[2, 0] = 255, 2**31  # past int32: clipped
    rows = counts.rows(1, 3)
    assert rows.dtype == np.int32 and rows.shape == (2, 4)
    assert rows[0, 2] == 775 and rows[1, 0] == 2**31 - 1 and rows.sum() == 775 + 2**31 - 1


def test_a_job_dropped_without_closing_ends_its_binning_thread(tmp_path, monkeypatch):
    """A job that failed before closing its modules leaves no binning thread behind (nor the
    histogram's memory it holds): the thread holds its module weakly between messages."""
    import gc
    import threading
    import time

    import filewriter.modules.isis_histogram as isis_histogram

    monkeypatch.setattr(isis_histogram, "IDLE_CHECK_S", 0.05)
    before = {t for t in threading.enumerate() if t.name == "isis-histogram"}
    job = WriteJob(command(), JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    job.open()
    stream = isis_stream(frames=5)
    for offset, payload in enumerate(stream.payloads):
        job._dispatch(TOPIC, payload, Window(START_NS, stream.stop_ns), offset)
    (thread,) = {t for t in threading.enumerate() if t.name == "isis-histogram"} - before
    job._file.close()
    del job
    gc.collect()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not thread.is_alive()
