"""The beam monitors on the live view's DAE spectra (liveview.monitor_spectra, run_histogram,
dae_arrays): each monitor of the run start's isis_histogram config is served at the
spectrum the file writer numbers its monitor_hist_<i> with, and holds what that dataset
holds (good frames only, by period, the run's time channels); no config serves none, as
before; a malformed config or an ambiguous monitor is said, never stops the run, and never
mixes counts."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import h5py
import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72

from datastream.epics_network import EpicsPorts
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings
from datastream.run_window import Window
from datastream.schemas.pu00 import PulseMetadata
from datastream.time_channels import TimeChannels
from filewriter.modules.isis_histogram import _monitors as writer_monitors
from liveview import dae_arrays, monitor_spectra
from liveview.metrics import collect
from liveview.run_follower import decide
from liveview.run_histogram import RunHistogram
from liveview.service import LiveSettings, LiveView
from liveview.spectrum_map import SpectrumMap
from tests.unit.test_icp_file_modules import (
    DETECTORS,
    FRAME_NS,
    MONITOR,
    MS,
    SPECTRA,
    START_NS,
    TCB,
    isis_stream,
    structure,
    write_file,
)

TC = TimeChannels(0, 4000, 4)  # 4 channels of 1 µs
DETECTOR_MAP = SpectrumMap.from_map(np.array([3, 4, 5]), np.array([1, 2, 3]), 3, 1, 3)


def with_monitors(monitors: object, **config: object) -> str:
    """A nexus_structure whose isis_histogram config has these monitors."""
    module = {"module": "isis_histogram",
              "config": {"topic": "T", "source": "DAE", "monitors": monitors} | config}
    return json.dumps({"children": [{"name": "raw_data_1", "type": "group",
                                     "children": [{"module": "isis_totals"}, module]}]})


def view_of(pixels: int, channels: int = 4) -> LiveView:
    config = InstrumentConfig(name="X", prefix="X:", dae={"pixels": pixels},
                              liveview={"channels": channels})
    view = LiveView(config, KafkaSettings("localhost:1"), LiveSettings.from_config(config),
                    EpicsPorts(liveview_ca=0))
    view._assign = lambda consumer, from_ms: None
    return view


def read(view: LiveView, name: str) -> list:
    pv = view.dae.pvdb[name]
    _, values = asyncio.run(pv.read(pv.data_type))
    return np.asarray(values).tolist()


def test_the_monitor_s_spectrum_is_the_file_s_monitor_histogram(tmp_path):
    """An ISIS stream (3 periods, vetoed frames, monitor `mon1` with no spectrum of its
    own) through the file writer and the live view alike: DAE:SPEC, SPECINTEGRALS and
    SPECDATA show at spectrum 25 (after the 24 detector spectra) what monitor_1/data has."""
    stream = isis_stream()
    extra, mid = [], 10_000
    for k in range(30):  # monitor events of vetoed frames: sent, not data
        if k % 7 == 3:
            mid += 1
            extra.append(serialise_ev44(MONITOR, mid, np.array([START_NS + k * FRAME_NS
                                                                + 5 * MS]),
                                        np.zeros(1, np.int32), np.full(9, 500, np.int32),
                                        np.full(9, 999, np.int32)))
    repeat = next(p for p in stream.payloads if b"mon1" in p)  # a producer's retry
    stream.payloads += [*extra, repeat]
    path, warnings = write_file(tmp_path, stream)
    assert warnings == []
    with h5py.File(path) as f:
        written = f["raw_data_1/monitor_1/data"][:]
        assert f["raw_data_1/monitor_1/spectrum_index"][:].tolist() == [25]
    view = view_of(50, channels=7)
    view._begin(None, decide(serialise_pl72(
        "job", "RUN.nxs", start_time=START_NS // MS, stop_time=stream.stop_ns // MS,
        run_name="00000007", nexus_structure=json.dumps(structure()),
        metadata=json.dumps({"title": "t", "tcb": TCB}),
        detector_spectrum_map=DetectorSpectrumMap(SPECTRA, DETECTORS, 24)), ""))
    assert view.spectra.monitors == ((25, MONITOR),)
    for payload in stream.payloads:
        view._on_event(payload)
    # read to the end of the events since the stop: a read need not wait for more
    view.consumer_lag, view._lag_checked_at = 0, time.monotonic() + 1
    assert written.shape == (3, 1, 50) and written.sum() > 0
    assert read(view, "X:DAE:NUMSPECTRA") == [25]  # NSP1: the monitor's spectrum too
    for p in range(3):
        assert read(view, f"X:DAE:SPEC:{p + 1}:25:YC")[:50] == written[p, 0].tolist()
    integrals = np.array(read(view, "X:DAE:SPECINTEGRALS")).reshape(3, 26)
    assert integrals[:, 25].tolist() == written.sum(axis=(1, 2)).tolist()
    asyncio.run(view.dae.process_specdata())
    cube = np.asarray(view.dae.specdata.value).reshape(3, 26, 51)
    assert cube[:, 25, 1:].tolist() == written[:, 0].tolist()
    # the detectors' spectra are the detectors' alone
    assert cube[:, 1:25].sum() == view.histogram.pixel_totals()[:48].sum()
    # LIVE:SPEC (PVA) serves it too
    assert view.arrays.testChannel("X:LIVE:SPEC:2:25:YC")
    assert view.arrays._value(1, 25, "YC").tolist() == written[1, 0].tolist()
    assert view.histogram.snapshot()["events"] == view.histogram.pixel_totals().sum() + int(
        view.histogram.snapshot()["outside"])  # EVENTS: the detector's alone
    # what was not binned, the monitor's apart, is in the metrics
    metrics = {m.name: m.samples[0].value for m in collect(view)}
    snapshot = view.histogram.snapshot()
    assert metrics["liveview_outside_events"] == snapshot["outside"]
    assert metrics["liveview_monitor_outside_events"] == snapshot["monitor_outside"]


def test_monitors_by_period_good_frames_only_at_their_own_spectra():
    """Two monitors: one at its spectrum 1 (below the detectors'), one with none (the next
    after the detectors' highest, 5, in the list's order: 7); their events binned by their
    frame's period, a vetoed frame's and those outside the run or repeated left out."""
    spectra, warnings = monitor_spectra.for_run(
        with_monitors([{"source": "m1", "spectrum": 1}, {"source": "m2"}]), DETECTOR_MAP,
        "DAE")
    assert warnings == [] and spectra.monitors == ((1, "m1"), (7, "m2"))
    assert spectra.n_spectra == 7 == spectra.last and spectra.named() == (1, 7)
    hist = RunHistogram(1, 3, TC, max_periods=2)
    hist.reset(Window(1000, 10_000), spectra.monitor_sources)
    for t, vetos, period in ((2000, 0, 0), (3000, 0, 1), (4000, 1, 0), (5000, 0, 5)):
        hist.add_pulse(PulseMetadata("DAE", t, t, vetos, period, 1.0))

    def monitor(name: str, message_id: int, times: list[int], tof: list[int]) -> int:
        ref = np.array(times, np.int64)
        return hist.add_monitor(name, message_id, ref, np.arange(len(ref), dtype=np.int32),
                                np.array(tof, np.int32), np.full(len(tof), 9, np.int32))

    assert monitor("m1", 1, [2000, 3000], [500, 1500]) == 2  # periods 1 and 2
    assert monitor("m1", 1, [2000, 3000], [500, 1500]) == 0  # repeated
    assert monitor("m2", 1, [2000], [2500]) == 1  # another source's id 1: not a repeat
    assert monitor("m1", 2, [4000], [500]) == 0  # a vetoed frame's
    assert monitor("m1", 3, [20_000], [500]) == 0  # past the run
    assert monitor("m1", 4, [5000], [500]) == 1  # taken, in period 6: not binned here
    assert monitor("m1", 5, [6000], [3500, 9000]) == 2  # no pu00: good, period 1; 9 µs out
    assert monitor("other", 6, [2000], [500]) == 0  # no monitor of the run's
    assert hist.snapshot()["events"] == 0  # the detector's count alone
    # taken, not binned (period 6; 9 µs), and said so: not dropped without a count
    assert hist.snapshot()["monitor_outside"] == 2
    value = lambda p, s: dae_arrays.spectrum_value(hist, spectra, p, s, "YC").tolist()  # noqa: E731
    assert value(1, 1) == [1, 0, 0, 1] and value(2, 1) == [0, 1, 0, 0]
    assert value(1, 7) == [0, 0, 1, 0] and value(2, 7) == [0, 0, 0, 0]
    assert value(1, 3) == [0, 0, 0, 0]  # a detector spectrum: no monitor counts in it
    integrals = dae_arrays.spec_integrals(hist, spectra, 2, 100).reshape(2, 8)
    assert integrals[:, 1].tolist() == [2, 1] and integrals[:, 7].tolist() == [1, 0]
    cube = dae_arrays.spec_data(hist, spectra, 2, 10_000).reshape(2, 8, 5)
    assert cube[0, 1, 1:].tolist() == [1, 0, 0, 1] and cube[0, 7, 1:].tolist() == [0, 0, 1, 0]
    assert not cube[:, 2:7].any()  # no pixel counted
    # a new run empties them, and serves only its own monitors
    hist.reset(Window(1000, 10_000), ("m2",))
    assert value(1, 1) == [0, 0, 0, 0] and monitor("m1", 7, [2000], [500]) == 0


def test_logarithmic_channels_bin_monitors_as_the_detector():
    channels = TimeChannels(1000, 16000, 4, True)  # edges 1, 2, 4, 8, 16 µs
    hist = RunHistogram(1, 1, channels)
    hist.reset(Window(0, None), ("m",))
    hist.add_monitor("m", 1, np.array([5]), np.array([0]),
                     np.array([500, 1500, 3000, 3999, 15_000, 16_000], np.int32),
                     np.zeros(6, np.int32))
    assert hist.monitor("m", 0).tolist() == [1, 2, 0, 1]
    assert hist.monitor("m", 1).tolist() == [0, 0, 0, 0]  # a period not held
    assert hist.monitor("x", 0).tolist() == [0, 0, 0, 0]  # no such monitor


@pytest.mark.parametrize("monitors", [
    [{"source": "a", "spectrum": 9}, {"source": "b"}, {"source": "c", "spectrum": 0},
     {"source": "d", "spectrum": None}],
    [{"source": "a"}, {"source": "b", "spectrum": 2}],
    [],
])
def test_spectra_are_numbered_as_the_file_writer_numbers_them(monitors):
    ours = monitor_spectra.configured(monitors, 5)
    theirs = writer_monitors({"monitors": monitors}, 5)
    assert [(s, n) for s, n, _ in ours] == [(m.source, m.spectrum) for m in theirs]


def test_no_isis_histogram_config_serves_no_monitor_as_before(monkeypatch):
    view = view_of(3)
    for structure_ in ("{}", json.dumps({"children": [{"module": "ev44"}]}), None,
                       with_monitors(None), with_monitors([])):
        spectra, warnings = monitor_spectra.for_run(structure_, DETECTOR_MAP, "DAE")
        assert spectra is DETECTOR_MAP and warnings == []
    view._begin(None, decide(serialise_pl72(
        "job", "X.nxs", start_time=1, run_name="00000001", nexus_structure="{}",
        detector_spectrum_map=DetectorSpectrumMap(np.array([1, 2, 3], np.int32),
                                                  np.array([1, 2, 3], np.int32), 3)), ""))
    assert view.spectra.monitors == () and view.histogram.monitors == ()
    assert read(view, "X:DAE:NUMSPECTRA") == [3]
    with pytest.raises(KeyError):  # past the map: no spectrum
        view.dae.pvdb["X:DAE:SPEC:1:4:YC"]
    assert view.histogram.add_monitor("mon", 1, np.array([5_000_000]), np.array([0]),
                                      np.array([5], np.int32), np.array([9], np.int32)) == 0


@pytest.mark.parametrize(("structure_", "reason"), [
    ("{not json", "not JSON"),
    ("[" * 100_000, "not JSON"),
    (json.dumps({"children": [{"module": "isis_histogram", "config": [1]}]}),
     "config is not an object"),
    (with_monitors({"source": "m"}), "not a list"),
    (with_monitors(["m"]), "monitor 1 is not an object"),
    (with_monitors([{"source": "a"}, {"spectrum": 4}]), "monitor 2 is not an object"),
    (with_monitors([{"source": 7}]), "monitor 1 is not an object"),
    (with_monitors([{"source": "a", "spectrum": "7"}]), "spectrum '7'"),
    (with_monitors([{"source": "a", "spectrum": -1}]), "spectrum -1"),
    (with_monitors([{"source": "a", "spectrum": 2.5}]), "spectrum 2.5"),
    (with_monitors([{"source": "a", "spectrum": True}]), "spectrum True"),
    (with_monitors([{"source": "a", "spectrum": 2**40}]), "spectrum 1099511627776"),
    (with_monitors([{"source": "a"}], pixels=2**40), "spectrum 1099511627777"),
    (with_monitors([{"source": f"m{i}"} for i in range(300)]), "300 monitors"),
])
def test_a_malformed_monitors_config_is_said_and_serves_none(caplog, structure_, reason):
    view = view_of(3)
    view._begin(None, decide(serialise_pl72(
        "job", "X.nxs", start_time=1, run_name="00000001", nexus_structure=structure_), ""))
    assert view.run_name == "00000001"  # followed all the same
    assert view.spectra.monitors == () and view.spectra.n_spectra == 3
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(reason in m and "monitors are not served" in m for m in said), said


def test_an_ambiguous_monitor_is_refused_and_the_others_served():
    spectra, warnings = monitor_spectra.for_run(with_monitors([
        {"source": "DAE", "spectrum": 10, "name": "on_detector_source"},
        {"source": "twice", "spectrum": 11}, {"source": "twice", "spectrum": 12},
        {"source": "a", "spectrum": 4, "name": "on_detector_spectrum"},
        {"source": "b", "spectrum": 8}, {"source": "c", "spectrum": 8},
        {"source": "ok", "spectrum": 2, "name": "fine"}]), DETECTOR_MAP, "DAE")
    assert spectra.monitors == ((2, "ok"),) and spectra.n_spectra == 5
    assert len(warnings) == 6 and not any("fine" in w for w in warnings)
    assert any("on_detector_source" in w and "the detector's" in w for w in warnings)
    assert any("on_detector_spectrum" in w and "spectrum 4 is a detector spectrum" in w
               for w in warnings)
    assert sum("another monitor's too" in w for w in warnings) == 4
    # no map: a default spectrum after the config's pixels (the file writer's rule),
    # one a pixel's spectra are the detectors'
    one = SpectrumMap.one_a_pixel(1, 16)
    spectra, warnings = monitor_spectra.for_run(with_monitors(
        [{"source": "a"}, {"source": "b", "spectrum": 16}], first_pixel=1, pixels=16),
        one, "DAE")
    assert spectra.monitors == ((17, "a"),) and spectra.n_spectra == 17
    assert warnings == ["monitor monitor_2 is not served as a spectrum: spectrum 16 is a "
                        "detector spectrum"]
