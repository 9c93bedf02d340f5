"""ISIS's own clients, unchanged from PyPI, against the whole instrument: genie_python runs a
script with its defaults (begin, waitfor, spectra, periods, pause, resume, end, abort), and
ibex_bluesky_core runs a bluesky plan with SimpleDae (a run per point, a GoodUah waiter, a
period-good-frames normaliser) through its RunEngine, its documents going to <INST>_bluesky.
Each runs in its own process, as a scientist's script does, with `datastream env`'s settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from datastream.kafka_client import KafkaSettings
from ioc.dae_settings import Tcb
from ioc.labview_xml import dehex_decompress
from tests.conftest import EPICS_PORTS, wait_until
from tests.system.conftest import PREFIX, Instrument, caget, start_instrument

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def isis(kafka: KafkaSettings, tmp_path_factory) -> Iterator[Instrument]:
    # ev42: its is84 carries each frame's period (ev44 has none)
    yield from start_instrument(kafka, tmp_path_factory, dae={"event_schema": "ev42"})


def _run_script(code: str, cwd: Path, extra_env: dict[str, str] | None = None) -> dict:
    """Run a client script in its own process; it prints one JSON line last."""
    # ibex_bluesky_core logs to C:\instrument\var\logs\bluesky (a folder of that name
    # under the working directory on Linux) unless told otherwise
    env = (os.environ | EPICS_PORTS.client_env() | {"IBEX_BLUESKY_CORE_LOGS": str(cwd)}
           | (extra_env or {}))
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=420)
    if proc.returncode != 0:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


GENIE_SCRIPT = """
import json, os, time
from genie_python import genie as g
g.toggle.exceptions_raised(True)
g.set_instrument("{prefix}", import_instrument_init=False)
out = {{}}
g.change_title("genie run")
g.change_rb(1920123)
g.change_users("Alice Smith, Bob Jones")
out["title"] = g.get_title()
out["rb"] = g.get_rb()
g.change_number_soft_periods(2)
out["periods"] = g.get_number_periods()
g.change_tcb(0, 40000, 40)
out["tcb"] = g.get_tcb_settings(1)
out["next_run"] = g.get_runnumber()
g.begin()
out["state_after_begin"] = g.get_runstate()
out["run"] = g.get_runnumber()
g.waitfor_frames(10)
out["since_begin"] = g.get_time_since_begin()
g.pause()
out["paused"] = g.get_runstate()
g.change_period(2)
out["period"] = g.get_period()
g.resume()
out["resumed"] = g.get_runstate()
g.waitfor_frames(25)
spectrum = g.get_spectrum(3, period=1, dist=False)
out["spectrum_len"] = [len(spectrum["time"]), len(spectrum["signal"])]
out["spectrum_time"] = spectrum["time"][-3:]
out["spectra"], out["channels"] = g.get_number_spectra(), g.get_number_timechannels()
out["dashboard"] = g.get_dashboard()
g.end()
out["ended"] = g.get_runstate()
out["totalcounts"] = g.get_totalcounts()
out["events"] = g.get_events()
out["frames_pd"] = [g.get_frames(period=True)]
g.begin(quiet=True)
out["second_run"] = g.get_runnumber()
g.waitfor_frames(5)
g.abort()
out["after_abort"] = [g.get_runstate(), g.get_runnumber()]
print(json.dumps(out))
"""


def test_genie_python_runs_a_run_with_its_defaults(isis: Instrument, tmp_path: Path) -> None:
    out = _run_script(GENIE_SCRIPT.format(prefix=PREFIX), tmp_path)
    assert out["title"] == "genie run" and out["rb"] == "1920123"
    assert out["periods"] == 2
    assert out["tcb"] == {"From": "0", "To": "40000", "Steps": "40"}
    assert out["next_run"] == out["run"]  # in SETUP, the number the next run gets
    assert out["state_after_begin"] == "RUNNING"
    assert out["paused"] == "PAUSED" and out["period"] == 2 and out["resumed"] == "RUNNING"
    assert out["since_begin"] >= 0
    assert out["spectrum_len"][1] == out["channels"]
    assert out["spectrum_len"][0] == out["channels"] + 1 and out["channels"] == 1000
    # the last of genie's N+1 times is the last centre again, as ISISDAE pads X
    assert out["spectrum_time"] == [39940.0, 39980.0, 39980.0]
    assert out["spectra"] == 1025  # the 1,024 pixels' and the monitor's after them
    assert out["dashboard"]["title"] == "genie run"
    assert out["ended"] == "SETUP"
    assert out["totalcounts"] == out["events"] > 0
    # the aborted run leaves no file, and its number is the next run's
    assert out["after_abort"][0] == "SETUP" and out["after_abort"][1] == out["second_run"]
    run = int(out["run"])
    # the writer discards the aborted run's file once it reads the abort
    wait_until(lambda: sorted(p.name for p in isis.data_dir.glob("*.nxs"))
               == [f"SYS{run:08d}.nxs"], 30, "only the ended run's file")
    files = [f"SYS{run:08d}.nxs"]
    with h5py.File(isis.data_dir / files[0]) as f:
        entry = f["raw_data_1"]
        assert entry["title"][()].decode() == "genie run"
        assert entry["experiment_identifier"][()].decode() == "1920123"
        users = sorted(entry[k]["name"][()].decode() for k in entry if k.startswith("user_"))
        assert users == ["Alice Smith", "Bob Jones"]
        ids = entry["detector_1_events"]["event_id"][...]
        assert len(ids) == out["totalcounts"]
    assert caget(isis.pv("DAE:IRUNNUMBER")) == int(out["second_run"])
    # the settings outlive the IOC, as the ICP's do
    isis.restart("run-control-ioc")
    again = _run_script(f"""
        import json
        from genie_python import genie as g
        g.toggle.exceptions_raised(True)
        g.set_instrument("{PREFIX}", import_instrument_init=False)
        print(json.dumps([g.get_tcb_settings(1), g.get_number_periods(), g.get_runnumber()]))
        """, tmp_path)
    assert again == [out["tcb"], 2, out["second_run"]]


BLUESKY_SCRIPT = """
import json, time
from pathlib import Path
import ibex_bluesky_core.callbacks._document_logger as document_logger
# its raw-document log has a Windows path; kept in this test's folder
document_logger.log_location = Path("raw_documents")
import bluesky.plans as bp
from ophyd_async.plan_stubs import ensure_connected
from ibex_bluesky_core.devices.block import BlockRw
from ibex_bluesky_core.devices.simpledae import (
    GoodUahWaiter, PeriodGoodFramesNormalizer, RunPerPointController, SimpleDae)
from ibex_bluesky_core.run_engine import get_run_engine

SPECTRA = [1, 2, 3, 4, 5, 6, 7, 8]
def plan():
    controller = RunPerPointController(save_run=True)
    reducer = PeriodGoodFramesNormalizer(prefix="{prefix}", detector_spectra=SPECTRA)
    dae = SimpleDae(prefix="{prefix}", controller=controller, waiter=GoodUahWaiter(0.01),
                    reducer=reducer)
    controller.run_number.set_name("run_number")
    reducer.intensity.set_name("intensity")
    # the sample environment's temperature, as an IBEX block
    block = BlockRw(float, "{prefix}", "TEMP")
    yield from ensure_connected(block, dae, force_reconnect=True)
    yield from bp.scan([dae], block, 300.0, 301.0, num=2)

RE = get_run_engine()
events = []
RE.subscribe(lambda name, doc: events.append(doc["data"]) if name == "event" else None)
uid = RE(plan()).run_start_uids[0]
# its Kafka callback never flushes: give the producer's thread time to send the last ones
time.sleep(3)
print(json.dumps({{"uid": uid, "events": events, "spectra": SPECTRA}}))
"""


def test_ibex_bluesky_core_runs_a_plan(isis: Instrument, tmp_path: Path) -> None:
    env = {"MYPVPREFIX": PREFIX, "IBEX_BLUESKY_CORE_LOGS": str(tmp_path / "logs"),
           "IBEX_BLUESKY_CORE_OUTPUT": str(tmp_path / "out"),
           "IBEX_BLUESKY_CORE_KAFKA_BROKER": isis.kafka.bootstrap,
           "COMPUTERNAME": "NDXSYS", "MPLBACKEND": "Agg"}
    low, high, _, _ = Tcb().updated(dehex_decompress(
        caget(isis.pv("DAE:TCBSETTINGS"), as_string=True))).channels()  # ns
    out = _run_script(BLUESKY_SCRIPT.format(prefix=PREFIX), tmp_path, env)
    assert len(out["events"]) == 2
    # the block's readback at each point (the temperature ramps towards the setpoint)
    assert all(250.0 < e["TEMP"] < 350.0 for e in out["events"]), out["events"]
    for event in out["events"]:
        run = int(event["run_number"])
        frames = event["DAE-period-good_frames"]
        with h5py.File(isis.data_dir / f"SYS{run:08d}.nxs") as f:
            events = f["raw_data_1"]["detector_1_events"]
            ids, tof = events["event_id"][...], events["event_time_offset"][...]
        # the spectra count the events within the run's time channels (the TCB genie's
        # test set, if it ran first), as the DAE's histograms do
        counts = int((np.isin(ids, out["spectra"]) & (tof >= low) & (tof < high)).sum())
        # the live view's spectra (what the reducer summed) hold the file's events
        assert event["DAE-reducer-det_counts"] == counts
        assert frames > 0
        assert event["intensity"] == pytest.approx(counts / frames)
    import msgpack
    import msgpack_numpy

    from tests.integration.conftest import read_all

    docs = [msgpack.unpackb(m.value(), object_hook=msgpack_numpy.decode)
            for m in read_all(isis.kafka, "SYS_bluesky", timeout=10)]
    names = [name for name, _ in docs]
    assert "start" in names and "stop" in names and names.count("event") >= 2
    assert any(doc.get("uid") == out["uid"] for name, doc in docs if name == "start")
