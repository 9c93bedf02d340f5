"""The ISIS DAE's spectrum PVs the live view serves over CA (liveview.dae_arrays, dae_ca): the
names, the values against the histogram, the layouts of SPECDATA and SPECINTEGRALS, the run's
TCB from the pl72, and a round trip through EPICS base's libca (pyepics)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import numpy as np
import pytest
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72

from datastream.run_window import Window
from datastream.time_channels import TimeChannels
from liveview import dae_arrays
from liveview.dae_ca import DaeSpectra, parse_spec
from liveview.run_follower import decide
from liveview.run_histogram import RunHistogram
from liveview.spectrum_map import SpectrumMap
from tests.conftest import EPICS_PORTS

TC = TimeChannels(0, 3000, 3)  # 3 channels of 1 µs
ONE = SpectrumMap.one_a_pixel(1, 4)  # no map: spectrum n is pixel n


def histogram(periods: int = 2) -> RunHistogram:
    """Pixels 1..4, 3 channels; counts that differ by pixel, channel and period."""
    hist = RunHistogram(first_pixel=1, n_pixels=4, channels=TC, max_periods=periods)
    hist.reset(Window(0, None))
    message = 0
    for period in range(periods):
        for pixel in range(1, 5):
            for channel in range(3):
                n = 1 + pixel * 3 + channel + 20 * period
                message += 1
                hist.add(message, np.array([message]), np.array([0]),
                         np.full(n, channel * 1000 + 500, np.int32), np.full(n, pixel, np.int32),
                         period=period)
    return hist


def test_spectrum_names_are_the_dae_s():
    assert parse_spec("SPEC:1:5:X") == (1, 5, "X", "")
    assert parse_spec("SPEC:0:16384:YC.NORD") == (0, 16384, "YC", "NORD")
    assert parse_spec("SPEC:2:7:XE.EGU") == (2, 7, "XE", "EGU")
    assert parse_spec("SPEC:5:Y") == (1, 5, "Y", "")  # short form: period 1
    for bad in ("SPEC:1:5:Z", "SPEC:1:5:X.VAL", "SPEC:a:5:X", "SPECDATA", "SPEC:1:5:XX"):
        assert parse_spec(bad) is None


def test_spectrum_values_are_the_histogram_s():
    hist = histogram()
    counts = hist.spectrum(3, 1).astype(np.float64)
    assert dae_arrays.spectrum_value(hist, ONE, 2, 3, "YC").tolist() == counts.tolist()
    # 1 µs channels: counts per µs are the counts; X the centres, XE the edges in µs
    assert dae_arrays.spectrum_value(hist, ONE, 2, 3, "Y").tolist() == counts.tolist()
    assert dae_arrays.spectrum_value(hist, ONE, 1, 3, "X").tolist() == [0.5, 1.5, 2.5]
    assert dae_arrays.spectrum_value(hist, ONE, 1, 3, "XE").tolist() == [0, 1, 2, 3]
    assert dae_arrays.spectrum_value(hist, ONE, 1, 3, "YC").dtype == np.float32
    assert dae_arrays.spectrum_value(hist, ONE, 1, 0, "YC").tolist() == [0, 0, 0]  # no pixel 0
    wide = RunHistogram(1, 1, TimeChannels(0, 4000, 2))
    wide.reset(Window(0, None))
    wide.add(1, np.array([1]), np.array([0]), np.array([100, 200], np.int32),
             np.array([1, 1], np.int32))
    one = SpectrumMap.one_a_pixel(1, 1)
    assert dae_arrays.spectrum_value(wide, one, 1, 1, "Y").tolist() == [1.0, 0.0]  # 2 in 2 µs


def test_period_0_is_the_current_period():
    hist = histogram()
    assert hist.current_period == 1  # the last frame's
    assert dae_arrays.spectrum_value(hist, ONE, 0, 2, "YC").tolist() == hist.spectrum(2, 1).tolist()
    hist.add(999, np.array([999]), np.array([0]), np.array([5], np.int32),
             np.array([2], np.int32), period=0)
    assert dae_arrays.spectrum_value(hist, ONE, 0, 2, "YC").tolist() == hist.spectrum(2, 0).tolist()
    hist.reset(Window(0, None))
    assert hist.current_period == 0


def test_specintegrals_are_period_by_spectrum_from_spectrum_0():
    hist = histogram()
    out = dae_arrays.spec_integrals(hist, ONE, 2, 1_000_000)
    assert out.dtype == np.int32 and len(out) == 2 * 5
    by = out.reshape(2, 5)
    assert by[:, 0].tolist() == [0, 0]  # spectrum 0: no pixel 0 here
    for period in range(2):
        for spectrum in range(1, 5):
            assert by[period, spectrum] == hist.spectrum(spectrum, period).sum()
    assert dae_arrays.spec_integrals(hist, ONE, 2, 7).tolist() == out[:7].tolist()
    # pixels from 0: spectrum 0 is pixel 0, spectrum NUMSPECTRA has no pixel
    zero = RunHistogram(0, 2, TC)
    zero.reset(Window(0, None))
    zero.add(1, np.array([1]), np.array([0]), np.array([5, 5, 5], np.int32),
             np.array([0, 1, 1], np.int32))
    from_0 = SpectrumMap.one_a_pixel(0, 2)
    assert dae_arrays.spec_integrals(zero, from_0, 1, 100).tolist() == [1, 2, 0]


def test_specdata_is_period_spectrum_bin_with_a_junk_bin_0():
    hist = histogram()
    out = dae_arrays.spec_data(hist, ONE, 2, 5_000_000)
    assert len(out) == dae_arrays.specdata_length(4, 3, 2) == 2 * 5 * 4
    cube = out.reshape(2, 5, 4)
    assert not cube[:, :, 0].any() and not cube[:, 0].any()  # bin 0, spectrum 0
    for period in range(2):
        for spectrum in range(1, 5):
            assert cube[period, spectrum, 1:].tolist() == hist.spectrum(spectrum,
                                                                        period).tolist()
    # cut to the NELM: the first elements, as many as fit
    assert dae_arrays.spec_data(hist, ONE, 2, 23).tolist() == out[:23].tolist()
    # a period counted but not held reads as zeros
    assert not dae_arrays.spec_data(hist, ONE, 3, 1000)[40:].any()


def test_specdata_is_copied_in_chunks(monkeypatch):
    monkeypatch.setattr(dae_arrays, "ROWS_CHUNK", 3)
    hist = histogram()
    monkeypatch.setattr(dae_arrays, "ROWS_CHUNK", 256)
    whole = dae_arrays.spec_data(hist, ONE, 2, 5_000_000)
    monkeypatch.setattr(dae_arrays, "ROWS_CHUNK", 3)
    assert dae_arrays.spec_data(hist, ONE, 2, 5_000_000).tolist() == whole.tolist()
    assert dae_arrays.spec_data(hist, ONE, 2, 31).tolist() == whole[:31].tolist()


def pl72(metadata: dict) -> bytes:
    return serialise_pl72("job", "X1.nxs", start_time=1000, run_name="00000001",
                          nexus_structure="{}", metadata=json.dumps(metadata))


def test_the_run_s_time_channels_come_from_the_pl72_metadata():
    tcb = {"tof_min_ns": 1000.0, "tof_max_ns": 20000.0, "channels": 50, "logarithmic": True}
    run = decide(pl72({"title": "t", "tcb": tcb}), "")
    assert run.title == "t" and run.channels == TimeChannels(1000, 20000, 50, True)
    assert decide(pl72({"tcb": tcb | {"logarithmic": False, "channels": 7}}), "").channels \
        == TimeChannels(1000, 20000, 7)
    for bad in ({}, {"tcb": 5}, {"tcb": tcb | {"channels": "x"}},
                {"tcb": tcb | {"channels": 2.5}}, {"tcb": tcb | {"tof_max_ns": 0}},
                {"tcb": tcb | {"tof_min_ns": 0.0}},  # logarithmic from 0
                {"tcb": {"channels": 5}}, {"tcb": tcb | {"logarithmic": "yes"}}):
        assert decide(pl72(bad), "").channels is None, bad
    assert decide(pl72({"title": "t"}), "").title == "t"


def test_a_run_s_tcb_rebins_the_live_view_unless_too_large(monkeypatch):
    from datastream.epics_network import EpicsPorts
    from datastream.instrument import InstrumentConfig
    from datastream.kafka_client import KafkaSettings
    from liveview.run_follower import RunStarted
    from liveview.service import LiveSettings, LiveView

    config = InstrumentConfig(name="X", dae={"pixels": 100}, liveview={"max_histogram_mb": 1})
    view = LiveView(config, KafkaSettings("localhost:1"), LiveSettings.from_config(config),
                    EpicsPorts(liveview_ca=0))
    monkeypatch.setattr(view, "_assign", lambda consumer, from_ms: None)
    tcb = TimeChannels(0, 5000, 20)
    view._begin(None, RunStarted("job", "1", 0, None, "", tcb))
    assert view.histogram.channels == tcb and view.arrays.histogram is view.histogram
    huge = TimeChannels(0, 5000, 100_000)  # 40 MB: over the 1 MB allowed
    view._begin(None, RunStarted("job2", "2", 0, None, "", huge))
    assert view.histogram.channels == tcb
    assert view.caught_up()
    view._begin(None, RunStarted("job3", "3", 0, 10, "", None))  # stopped, lag not checked
    assert not view.caught_up()
    view.consumer_lag, view._lag_checked_at = 0, time.monotonic() + 1
    assert view.caught_up()


def dae(hist: RunHistogram, caught_up=lambda: True) -> DaeSpectra:
    return DaeSpectra("T:", lambda: hist, 4, 2, caught_up)


def test_spectrum_pvs_are_made_when_asked_for():
    spectra = dae(histogram())
    base = len(spectra.pvdb)
    channel = spectra.pvdb["T:DAE:SPEC:1:3:YC.NORD"]
    assert channel is spectra.pvdb["T:DAE:SPEC:1:3:YC.NORD"]
    assert {"T:DAE:SPEC:1:3:YC", "T:DAE:SPEC:1:3:YC.EGU"} <= set(spectra.pvdb)
    assert len(spectra.pvdb) == base + 3
    assert spectra.pvdb["T:DAE:SPEC:1:3:YC"].max_length == 8000
    for missing in ("T:DAE:SPEC:3:1:X", "T:DAE:SPEC:1:5:X", "T:DAE:TITLE", "T:LIVE:SPEC:1:1:X",
                    "U:DAE:SPEC:1:1:X", "T:DAE:SPEC:1:1:X.VAL"):
        with pytest.raises(KeyError):
            spectra.pvdb[missing]
    assert "T:DAE:SPEC:0:0:X" in spectra.make_spectrum("T:DAE:SPEC:0:0:X")


def test_reads_compute_now_and_wait_for_the_run_s_last_events():
    hist = histogram()
    waited = []
    spectra = dae(hist, lambda: bool(waited) or waited.append(1) or False)

    async def read(name: str):
        _, values = await spectra.pvdb[name].read(spectra.pvdb[name].data_type)
        return list(values) if hasattr(values, "__len__") else values

    # served whole, as ISISDAE's (past NORD: zeros)
    assert asyncio.run(read("T:DAE:SPEC:2:4:YC"))[:3] == hist.spectrum(4, 1).tolist()
    assert waited  # it asked whether the consumer had caught up
    hist.add(5000, np.array([5000]), np.array([0]), np.array([500], np.int32),
             np.array([4], np.int32), period=1)
    # served whole, as ISISDAE's (past NORD: zeros)
    assert asyncio.run(read("T:DAE:SPEC:2:4:YC"))[:3] == hist.spectrum(4, 1).tolist()
    assert asyncio.run(read("T:DAE:SPEC:2:4:XE.NORD")) == [4]
    assert asyncio.run(read("T:DAE:NUMSPECTRA")) == [4]
    assert asyncio.run(read("T:DAE:NUMTIMECHANNELS")) == [3]
    assert asyncio.run(read("T:DAE:SPECINTEGRALS.NORD")) == [10]
    assert asyncio.run(read("T:DAE:SPECINTEGRALS")) == dae_arrays.spec_integrals(
        hist, ONE, 2, 100).tolist()
    # an unwatched spectrum holds no value between reads
    assert len(spectra.pvdb["T:DAE:SPEC:2:4:YC"].value) == 1


@pytest.fixture()
def ca_server():
    """A DaeSpectra on a real caproto server, on the live view's CA port of the tests."""
    from liveview.ca_pvs import CaCounters

    hist = histogram()
    prefix = f"T{uuid.uuid4().hex[:6]}:"
    spectra = DaeSpectra(prefix, lambda: hist, 4, 2)
    server = CaCounters(f"{prefix}LIVE:", {"EVENTS": ("l", "events")},
                        EPICS_PORTS.liveview_ca, spectra.pvdb)
    spectra.serve_with(server.submit)
    server.start()
    try:
        yield prefix, hist, spectra
    finally:
        server.close()


def test_spectra_read_through_libca(ca_server):
    import epics

    prefix, hist, _ = ca_server
    p = prefix + "DAE:"
    yc = epics.PV(p + "SPEC:1:2:YC", auto_monitor=False)
    assert yc.wait_for_connection(5)
    assert epics.ca.field_type(yc.chid) == epics.dbr.FLOAT
    assert epics.ca.element_count(yc.chid) == 8000
    whole = yc.get(timeout=5, use_monitor=False).tolist()
    assert whole[:3] == hist.spectrum(2, 0).tolist() and not any(whole[3:])
    assert epics.caget(p + "SPEC:1:2:YC.NORD", timeout=5, use_monitor=False) == 3
    assert epics.caget(p + "SPEC:1:2:XE.NORD", timeout=5, use_monitor=False) == 4
    assert epics.caget(p + "SPEC:1:2:Y.EGU", timeout=5, use_monitor=False) == "cnt /us"
    xe = epics.PV(p + "SPEC:0:2:XE", form="ctrl", auto_monitor=False)
    assert xe.wait_for_connection(5)
    # past NORD the last edge again, as ISISDAE pads X and XE
    assert xe.get(timeout=5, use_monitor=False).tolist() == [0, 1, 2] + [3] * 7997
    assert xe.get_ctrlvars(timeout=5)["units"] == "us"
    assert epics.caget(p + "NUMSPECTRA", timeout=5, use_monitor=False) == 4
    assert epics.caget(p + "SPECINTEGRALS", timeout=5, use_monitor=False).tolist() == \
        dae_arrays.spec_integrals(hist, ONE, 2, 100).tolist()
    assert epics.caget(p + "SPECINTEGRALS.NORD", timeout=5, use_monitor=False) == 10
    assert epics.caget(prefix + "LIVE:EVENTS", timeout=5, use_monitor=False) == 0
    # SPECDATA: as it was processed last; a put to .PROC computes it anew
    assert epics.caput(p + "SPECDATA.PROC", 1, wait=True, timeout=10) == 1
    assert epics.caget(p + "SPECDATA.NORD", timeout=5, use_monitor=False) == 40
    assert epics.caget(p + "SPECDATA", timeout=5, use_monitor=False).tolist() == \
        dae_arrays.spec_data(hist, ONE, 2, 100).tolist()
    hist.add(7000, np.array([7000]), np.array([0]), np.array([500], np.int32),
             np.array([1], np.int32), period=0)
    before = epics.caget(p + "SPECDATA", timeout=5, use_monitor=False)
    assert before[5] == hist.spectrum(1, 0)[0] - 1  # not processed since
    assert epics.caput(p + "SPECDATA.PROC", 1, wait=True, timeout=10) == 1
    assert epics.caget(p + "SPECDATA", timeout=5, use_monitor=False)[5] == \
        hist.spectrum(1, 0)[0]


def test_monitored_spectra_are_posted_by_update(ca_server):
    import epics

    prefix, hist, spectra = ca_server
    seen = []
    pv = epics.PV(prefix + "DAE:SPEC:1:3:YC", auto_monitor=True,
                  callback=lambda value=None, **_: seen.append(value.tolist()))
    assert pv.wait_for_connection(5)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen and seen[-1][:3] == hist.spectrum(3, 0).tolist()
    hist.add(8000, np.array([8000]), np.array([0]), np.array([2500], np.int32),
             np.array([3], np.int32), period=0)
    spectra.update()
    deadline = time.monotonic() + 5
    while seen[-1][:3] != hist.spectrum(3, 0).tolist() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen[-1][:3] == hist.spectrum(3, 0).tolist()
    pv.disconnect()


def pl72_with_map(spectra: list[int], detectors: list[int], n_spectra: int,
                  job: str = "job") -> bytes:
    return serialise_pl72(job, "X1.nxs", start_time=1000, run_name="00000001",
                          nexus_structure="{}", metadata="{}",
                          detector_spectrum_map=DetectorSpectrumMap(
                              np.array(spectra, np.int32), np.array(detectors, np.int32),
                              n_spectra))


def test_a_run_s_grouping_map_sums_the_dae_s_spectra(monkeypatch):
    """Through the live view: a pl72 putting pixels 1+2 in spectrum 1, 3 in spectrum 2 and
    4 in the dust-bin gives 2 spectra on DAE:SPEC, NUMSPECTRA, SPECINTEGRALS, SPECDATA and
    LIVE:SPEC; the next run without a map is one a pixel again."""
    from datastream.epics_network import EpicsPorts
    from datastream.instrument import InstrumentConfig
    from datastream.kafka_client import KafkaSettings
    from liveview.service import LiveSettings, LiveView

    config = InstrumentConfig(name="X", prefix="X:", dae={"pixels": 4}, liveview={"channels": 3})
    view = LiveView(config, KafkaSettings("localhost:1"), LiveSettings.from_config(config),
                    EpicsPorts(liveview_ca=0))
    monkeypatch.setattr(view, "_assign", lambda consumer, from_ms: None)
    view._begin(None, decide(pl72_with_map([1, 1, 2, 0], [2, 1, 3, 4], 2), ""))
    hist = histogram()
    view.histogram = hist  # counts known by pixel, channel and period
    view.arrays.set_histogram(hist)
    dae = view.dae

    async def read(name: str):
        _, values = await dae.pvdb[name].read(dae.pvdb[name].data_type)
        return np.asarray(values).tolist()

    pair = [hist.spectrum(1, p) + hist.spectrum(2, p) for p in range(2)]
    assert asyncio.run(read("X:DAE:NUMSPECTRA")) == [2]
    assert asyncio.run(read("X:DAE:SPEC:1:1:YC"))[:3] == pair[0].tolist()
    assert asyncio.run(read("X:DAE:SPEC:2:1:YC"))[:3] == pair[1].tolist()
    assert asyncio.run(read("X:DAE:SPEC:2:2:YC"))[:3] == hist.spectrum(3, 1).tolist()
    assert asyncio.run(read("X:DAE:SPEC:0:0:YC"))[:3] == [0, 0, 0]  # the dust-bin
    with pytest.raises(KeyError):  # past NUMSPECTRA: pixel 4 is no spectrum now
        dae.pvdb["X:DAE:SPEC:1:4:YC"]
    assert asyncio.run(read("X:DAE:SPECINTEGRALS")) == [
        0, pair[0].sum(), hist.spectrum(3, 0).sum(), 0, pair[1].sum(),
        hist.spectrum(3, 1).sum()]
    assert asyncio.run(read("X:DAE:SPECINTEGRALS.NORD")) == [6]
    asyncio.run(dae.process_specdata())
    cube = np.asarray(dae.specdata.value).reshape(2, 3, 4)
    assert cube[1, 1, 1:].tolist() == pair[1].tolist() and not cube[:, 0].any()
    # LIVE:SPEC and LIVE:NUMSPECTRA are the same spectra
    arrays = view.arrays
    assert arrays.testChannel("X:LIVE:SPEC:1:2:YC")
    assert not arrays.testChannel("X:LIVE:SPEC:1:3:YC")
    assert arrays._value(1, 1, "YC").tolist() == pair[1].tolist()
    view.publish_counters()
    assert view.pvs.values()["NUMSPECTRA"] == 2
    # the next run, an older run start without a map: one spectrum a pixel
    view._begin(None, decide(pl72({}), "job2"))
    view.histogram = hist
    assert asyncio.run(read("X:DAE:NUMSPECTRA")) == [4]
    assert asyncio.run(read("X:DAE:SPEC:1:1:YC"))[:3] == hist.spectrum(1, 0).tolist()
    assert arrays.testChannel("X:LIVE:SPEC:1:4:YC")
