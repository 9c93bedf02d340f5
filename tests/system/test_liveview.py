"""The live view in the whole instrument: its PVA counters follow the run and, at its end,
equal DAE:TOTALCOUNTS and the file's event count exactly, also when the live view was
restarted mid-run (it catches up from the run's start)."""

from __future__ import annotations

import time

import h5py
import pytest
from p4p.client.thread import Context

from tests.conftest import wait_until
from tests.system.conftest import instrument  # noqa: F401 (the whole instrument, a fixture)
from tests.system.genie import Genie

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def pva():
    context = Context("pva")
    yield context
    context.close()


def live(pva, inst, name: str):
    try:
        return pva.get(inst.pv(f"LIVE:{name}"), timeout=2)
    except Exception:  # not served yet (a restarting live view)
        return None


def test_live_counts_equal_the_dae_and_the_file(instrument, pva):  # noqa: F811
    g = Genie(instrument.prefix)
    wait_until(lambda: live(pva, instrument, "EVENTS") is not None, 30, "the live view's PVs")
    g.begin()
    number = g.get("DAE:IRUNNUMBER")
    # (at start-up it showed the topic's last run, maybe another test's)
    started = g.text("DAE:START_TIME")[:19]  # ISO 8601, to the second
    wait_until(lambda: live(pva, instrument, "RUNNUMBER") == f"{number:08d}"
               and (live(pva, instrument, "START_TIME") or "")[:19] == started, 15,
               "the live view to follow the new run")
    wait_until(lambda: (live(pva, instrument, "EVENTS") or 0) > 0, 15, "live counts")
    assert live(pva, instrument, "NUMSPECTRA") == 1024  # the DAE's pixels
    instrument.restart("liveview")  # joins the run in progress and catches up
    time.sleep(1.5)
    g.end()
    total = g.get("DAE:TOTALCOUNTS")
    wait_until(lambda: live(pva, instrument, "EVENTS") == total, 20,
               f"LIVE:EVENTS to reach TOTALCOUNTS {total}")
    assert live(pva, instrument, "GOODFRAMES") == g.get("DAE:GOODFRAMES")
    assert live(pva, instrument, "STOP_TIME")
    with h5py.File(instrument.data_dir / f"SYS{number:08d}.nxs", "r") as f:
        assert len(f["raw_data_1/detector_1_events/event_id"]) == total
    time.sleep(1.0)  # the run is closed: nothing after its stop is added
    assert live(pva, instrument, "EVENTS") == total
