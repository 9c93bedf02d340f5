"""The live reduction against the offline one, on real parts only: a powder run written by the
whole instrument (run control, simulated DAE, file writer, live view, each its own process),
its file reduced offline with scippnexus (every position from the file) and scippneutron
(time of flight to d-spacing), histogrammed on the edges the live view serves, equals the live
I(d) read over PVA, bank by bank and bin by bin; the peaks are at the DAE's d-spacings; the
monitor's I(λ) holds the file's monitor events; the da00 messages on <INST>_liveData
carry the same curve."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipp as sc
import scippnexus as snx
from p4p.client.thread import Context

from tests.conftest import wait_until
from tests.system.conftest import instrument  # noqa: F401 (the whole instrument, a fixture)
from tests.system.genie import Genie

pytestmark = pytest.mark.system

BANKS = ("panel", "backscatter")
# the binning asked for over PVA before the run: logarithmic, the harder path
BINNING = {"DSPACING:MIN:SP": 0.5, "DSPACING:MAX:SP": 3.0, "DSPACING:BINS:SP": 1500,
           "DSPACING:LOG:SP": 1}


@pytest.fixture(scope="module")
def pva():
    context = Context("pva")
    yield context
    context.close()


def offline_dspacing(path, edges: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    """Each bank's I(d) of the run file on these edges, as check_geometry converts it; and
    the monitor's events."""
    from scippneutron.conversion import graph

    conversion = {**graph.beamline.beamline(scatter=True), **graph.tof.elastic("tof")}
    d_edges = sc.array(dims=["dspacing"], values=edges, unit="angstrom")
    out = {}
    with snx.File(path) as f:
        entry = f["raw_data_1"]
        source = snx.compute_positions(entry["instrument/source"][...])["position"]
        sample = snx.compute_positions(entry["sample"][...])["position"]
        for name in BANKS:
            events = snx.compute_positions(entry[f"instrument/{name}"][...])["events"]
            events = events.assign_coords(source_position=source, sample_position=sample)
            events = events.bins.assign_coords(
                tof=events.bins.coords["event_time_offset"].to(dtype="float64", unit="us"))
            d = events.transform_coords("dspacing", graph=conversion)
            out[name] = d.bins.concat().hist(dspacing=d_edges).values
        monitor = entry["monitor_1"][...]
        monitor_events = int(monitor["events"].bins.size().sum().value) if isinstance(
            monitor, sc.DataGroup) else int(monitor.bins.size().sum().value)
    return out, monitor_events


def test_live_d_spacing_equals_the_files_reduced_offline(instrument, pva):  # noqa: F811
    from ioc.simulated_dae import DaeSettings

    def get(name: str):
        try:
            return pva.get(instrument.pv(f"LIVE:{name}"), timeout=2)
        except Exception:  # not served yet
            return None

    wait_until(lambda: get("DSPACING:ALL:X") is not None, 30, "the live reduction's PVs")
    for name, value in BINNING.items():
        pva.put(instrument.pv(f"LIVE:{name}"), value, timeout=5)
    with pytest.raises(Exception, match="not below the maximum"):  # refused, said why
        pva.put(instrument.pv("LIVE:DSPACING:MIN:SP"), 3.5, timeout=5)
    def served() -> bool:  # each put takes effect at once, served at the next publish:
        edges = get("DSPACING:ALL:XE")  # all four, not just BINS (1501 equal edges first)
        return edges is not None and len(edges) == 1501 and np.isclose(
            np.log(edges[1] / edges[0]), np.log(6) / 1500, rtol=1e-6)

    wait_until(served, 10, "the new binning served")
    edges = np.asarray(get("DSPACING:ALL:XE"))
    assert edges[0] == 0.5 and edges[-1] == 3.0
    assert np.allclose(np.diff(np.log(edges)), np.log(6) / 1500, rtol=1e-9)

    g = Genie(instrument.prefix)
    g.waitfor_runstate("SETUP")
    g.begin()
    number = g.get("DAE:IRUNNUMBER")
    wait_until(lambda: get("RUNNUMBER") == f"{number:08d}", 15, "the live view on the run")
    time.sleep(4.0)
    g.end()
    wait_until(lambda: g.text("FILEWRITER:LASTFILE") == f"SYS{number:08d}.nxs", 20,
               "the run's file")
    total = g.get("DAE:TOTALCOUNTS")
    wait_until(lambda: get("EVENTS") == total, 20, f"LIVE:EVENTS to reach {total}")
    time.sleep(1.0)  # a publish of the arrays after the last event
    live = {name: np.asarray(get(f"DSPACING:{name.upper()}:Y")) for name in BANKS}
    live_all = np.asarray(get("DSPACING:ALL:Y"))
    assert get("DSPACING:EVENTS") + get("DSPACING:OUTSIDE") == total  # every bank event

    offline, monitor_events = offline_dspacing(instrument.data_dir / f"SYS{number:08d}.nxs",
                                               edges)
    for name in BANKS:
        diff = live[name] - offline[name]
        # only an event within float rounding of an edge may differ: a handful at most
        assert np.abs(diff).sum() <= 4, (name, np.flatnonzero(diff), diff[diff != 0])
        assert live[name].sum() > 1000
    assert np.array_equal(live_all, live["panel"] + live["backscatter"])

    # the powder's peaks where the DAE put them
    centres = np.asarray(get("DSPACING:ALL:X"))
    background = np.median(live_all)
    for d0 in DaeSettings().d_spacings:
        near = np.abs(centres - d0) < 0.03 * d0
        peak = centres[near][np.argmax(live_all[near])]
        assert abs(peak - d0) < 0.005 * d0, (d0, peak)
        assert live_all[near].max() > 5 * background, (d0, live_all[near].max(), background)

    # the monitor: every event of the run's good frames in I(λ), as the file holds them
    assert np.asarray(get("LAMBDA:MONITOR_1:Y")).sum() == monitor_events > 0
    per_monitor = np.asarray(get("DSPACING:ALL:Y_PER_MONITOR"))
    assert np.allclose(per_monitor, live_all / monitor_events)
    per_uah = np.asarray(get("DSPACING:ALL:Y_PER_UAH"))
    assert np.allclose(per_uah, live_all / get("GOODUAH"), rtol=1e-5)
    image = get("DSPACING:IMAGE")
    assert image.shape[1] == 1500 and np.asarray(image).sum() == live_all.sum()

    # and the same curve as da00, the last one sent
    from streaming_data_types.dataarray_da00 import deserialise_da00

    from tests.integration.conftest import read_all

    last = None
    for message in read_all(instrument.kafka, "SYS_liveData"):
        if message.value()[4:8] == b"da00" and message.key() == b"dspacing/ALL":
            last = deserialise_da00(message.value())
    assert last is not None
    data = {v.name: v.data for v in last.data}
    assert np.array_equal(data["signal"], live_all)
    assert np.array_equal(data["dspacing"], edges)
