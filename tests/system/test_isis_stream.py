"""ISIS's stream as it is today, through the whole instrument on real parts: the DAE sends
a pu00 a frame (3 hardware periods, proton charge with the beam's jitter, SMP vetoes on
about one frame in ten) then the frame's ev44 in chunks. Run control's counters, the live
view's, and the run file (framelog, totals, periods, the ICP's histogram) all agree, and the
file is what Mantid's ISIS loaders read."""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np
import pytest
from p4p.client.thread import Context

from tests.conftest import wait_until
from tests.system.conftest import Instrument, start_instrument
from tests.system.genie import Genie
from tests.unit.test_icp_file_mantid import check_mantid_file

pytestmark = pytest.mark.system

DAE = {"periods": 3, "vetoes": {"smp": 0.1}, "beam_jitter": 0.02,
       "max_events_per_message": 128, "events_per_frame": 300}


@pytest.fixture(scope="module")
def isis(kafka, tmp_path_factory) -> Iterator[Instrument]:
    yield from start_instrument(kafka, tmp_path_factory, dae=DAE)


def test_counters_live_view_and_file_agree_frame_for_frame(isis):
    g = Genie(isis.prefix)
    pva = Context("pva")
    try:
        g.begin()
        number = g.get("DAE:IRUNNUMBER")
        wait_until(lambda: g.get("DAE:RAWFRAMES") >= 60, 30, "60 frames")
        g.end()
        path = isis.data_dir / f"SYS{number:08d}.nxs"
        wait_until(path.exists, 10, "the file")
        dae = {name: g.get(f"DAE:{name}") for name in
               ("TOTALCOUNTS", "GOODFRAMES", "RAWFRAMES", "GOODUAH", "TOTALUAMPS")}
        assert dae["RAWFRAMES"] > dae["GOODFRAMES"] > 0  # some frames were vetoed
        assert dae["TOTALUAMPS"] > dae["GOODUAH"] > 0

        def live(name: str):
            try:
                return pva.get(isis.pv(f"LIVE:{name}"), timeout=2)
            except Exception:  # not served yet
                return None

        wait_until(lambda: live("EVENTS") == dae["TOTALCOUNTS"], 30, "LIVE:EVENTS")
        assert (live("GOODFRAMES"), live("RAWFRAMES")) == (dae["GOODFRAMES"], dae["RAWFRAMES"])
        assert abs(live("GOODUAH") - dae["GOODUAH"]) < 1e-5
        live_pd = [list(live(n)) for n in ("GOODFRAMES_PD", "RAWFRAMES_PD", "EVENTS_PD")]
    finally:
        pva.close()

    check_mantid_file(path)
    with h5py.File(path, "r") as f:
        e = f["raw_data_1"]
        ev = e["detector_1_events"]
        assert len(ev["event_id"]) == dae["TOTALCOUNTS"]
        tz = ev["event_time_zero"][:]
        # a frame an entry, vetoed frames too: the framelog lines up with it
        assert len(tz) == dae["RAWFRAMES"] and np.all(np.diff(tz.astype(np.int64)) > 0)
        period_log = e["framelog/period_log/value"][:]
        vetos = e["framelog/vetos/value"][:]
        assert len(period_log) == len(vetos) == len(tz)
        assert set(period_log.tolist()) == {1, 2, 3}  # 1-based in the file
        assert int(e["good_frames"][0]) == dae["GOODFRAMES"] == int(np.sum(vetos == 0))
        assert int(e["raw_frames"][0]) == dae["RAWFRAMES"]
        # the geometry's detector table, for Mantid's det-pos-source="datafile"
        vms = e["isis_vms_compat"]
        assert vms["LEN2"].shape == vms["UDET"].shape and vms["UT01"][:].any()
        assert abs(float(e["proton_charge"][0]) - dae["GOODUAH"]) < 1e-4
        assert abs(float(e["proton_charge_raw"][0]) - dae["TOTALUAMPS"]) < 1e-4
        assert int(e["periods/number"][0]) == 3
        assert e["periods/good_frames"][:].tolist() == live_pd[0]
        assert e["periods/raw_frames"][:].tolist() == live_pd[1]
        # the ICP's histogram: the file's own events of good frames, binned with the file's
        # time channels, period by period (detector ids = spectrum numbers here)
        counts = e["detector_1/counts"][:]
        edges = e["detector_1/time_of_flight"][:].astype(np.float64) * 1000  # µs -> ns
        spectra = e["detector_1/spectrum_index"][:]
        index = np.append(ev["event_index"][:], len(ev["event_id"]))
        ids, tof = ev["event_id"][:], ev["event_time_offset"][:]
        for period in range(3):
            expected = np.zeros(counts.shape[1:], np.int64)
            for k in np.flatnonzero((period_log == period + 1) & (vetos == 0)):
                sl = slice(index[k], index[k + 1])
                h, _, _ = np.histogram2d(ids[sl], tof[sl], bins=(
                    np.append(spectra, spectra[-1] + 1) - 0.5, edges))
                expected += h.astype(np.int64)
            assert np.array_equal(counts[period], expected), period
            assert int(counts[period].sum()) <= live_pd[2][period]
