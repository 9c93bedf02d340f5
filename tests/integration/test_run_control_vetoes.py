"""Vetoes on the real run-control IOC (its own process, a real broker): the DAE settings
switch the simulated DAE's vetoes on, as an instrument's are before its first run; ISISDAE's
veto PVs show them; VETO:ENABLE:SP / DISABLE:SP switch one by its ICP name at any time and
refuse an unknown name; PAUSE is the software veto (frames go on, raw, not good)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from caproto.threading.client import Context

from tests.conftest import EPICS_PORTS, ca_readable, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
[instrument]
name = "{inst}"
prefix = "TE:{inst}:"
[dae]
frame_rate_hz = 50.0
events_per_frame = 20
pixels = 64
vetoes = {{smp = 0.5}}
"""


@pytest.fixture
def ioc(kafka, topics, tmp_path):
    inst = topics.instrument
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(inst=inst))
    prefix = f"TE:{inst}:"
    with open(tmp_path / "ioc.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "launcher", "ioc", "--config", str(config),
             "--broker", kafka.bootstrap, "--data-dir", str(tmp_path),
             "--ca-port", str(EPICS_PORTS.run_control_ca)],
            stdout=out, stderr=subprocess.STDOUT,
            env=os.environ | EPICS_PORTS.server_env(EPICS_PORTS.run_control_ca))
    try:
        wait_until(lambda: ca_readable(prefix + "DAE:RUNSTATE"), 60, "the IOC")
        yield prefix
    finally:
        process.terminate()
        process.wait(20)


RUNNING, PAUSED = 2, 3  # ISISDAE's RUNSTATE numbers


def test_vetoes_are_switched_shown_and_counted(ioc, tmp_path):
    ctx = Context()
    names = ["GOODFRAMES", "RAWFRAMES", "VETOSTATUS", "VETOPC", "DAESETTINGS", "RUNSTATE",
             "VETO:ENABLE:SP", "VETO:DISABLE:SP", "BEGINRUN", "PAUSERUN", "RESUMERUN",
             "ABORTRUN", "ERRMSGS", "TOTALUAMPS", "GOODUAH"]
    pvs = dict(zip(names, ctx.get_pvs(*(f"{ioc}DAE:{n}" for n in names), timeout=5),
                   strict=True))
    for pv in pvs.values():
        pv.wait_for_connection(timeout=10)

    def value(name: str):
        data = pvs[name].read(timeout=5).data
        if isinstance(data[0], bytes):  # a string
            return data[0].rstrip(b"\0").decode()
        if data.dtype.kind == "u" and data.itemsize == 1:  # a char waveform: text
            return bytes(data).rstrip(b"\0").decode()
        return data[0]

    try:
        assert "<Name>SMP (Chopper) Veto</Name>" in value("DAESETTINGS")
        assert "SMP veto: ENABLED" in value("VETOSTATUS")
        pvs["BEGINRUN"].write([1], wait=True, timeout=10)
        wait_until(lambda: value("RAWFRAMES") >= 50, 30, "50 frames")
        good, raw = value("GOODFRAMES"), value("RAWFRAMES")
        assert 0 < good < raw  # about half vetoed by SMP
        wait_until(lambda: value("VETOPC") > 0, 10, "VETOPC")
        assert value("TOTALUAMPS") > value("GOODUAH") > 0  # raw charge, good charge
        status = value("VETOSTATUS")
        assert "SMP veto: ENABLED" in status and "frames vetoed" in status

        with pytest.raises(Exception):  # noqa: B017 (caproto raises its own kinds)
            pvs["VETO:ENABLE:SP"].write(b"NOSUCH", wait=True, timeout=5)
        assert "no veto named 'NOSUCH'" in value("ERRMSGS")

        pvs["VETO:DISABLE:SP"].write(b"SMP", wait=True, timeout=5)
        wait_until(lambda: "SMP veto: disabled" in value("VETOSTATUS"), 10, "SMP off")
        time.sleep(0.2)  # a frame made as the put landed may still carry the old mask

        def smp_vetoed() -> int:  # one PV read: a consistent count, unlike two counters
            line = next(x for x in value("VETOSTATUS").splitlines() if x.startswith("SMP"))
            return int(line.split(", ")[1].split()[0])

        vetoed, raw = smp_vetoed(), value("RAWFRAMES")
        time.sleep(1)
        # switched off, SMP stops no more frames while frames go on
        assert smp_vetoed() == vetoed and value("RAWFRAMES") - raw > 20
        wait_until(lambda: value("VETOPC") == 0, 10, "VETOPC 0")

        pvs["PAUSERUN"].write([1], wait=True, timeout=10)
        good, raw = value("GOODFRAMES"), value("RAWFRAMES")
        time.sleep(1)
        assert value("GOODFRAMES") == good and value("RAWFRAMES") > raw + 20
        assert "Pause (software) veto: ENABLED" in value("VETOSTATUS")
        wait_until(lambda: value("VETOPC") > 50, 10, "VETOPC of the paused frames")
        assert value("RUNSTATE") == PAUSED
        pvs["RESUMERUN"].write([1], wait=True, timeout=10)
        # the paused frames are vetoed, but by the pause: the run shows RUNNING at once
        # (genie's resume reads RUNSTATE straight away), not VETOING
        for _ in range(3):
            assert value("RUNSTATE") == RUNNING
            time.sleep(0.2)
        pvs["ABORTRUN"].write([1], wait=True, timeout=30)
    finally:
        ctx.disconnect()
