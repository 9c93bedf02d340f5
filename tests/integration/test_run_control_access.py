"""EPICS access security on the real run-control IOC (its own process): a site ACF decides
who may write; others read, and their puts fail; every accepted put is logged as caPutLog
logs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from caproto import AccessRights
from caproto.threading.client import Context

from tests.conftest import EPICS_PORTS, ca_readable, wait_until

pytestmark = pytest.mark.integration

ACF = (
    "UAG(operators) {alice}\n"
    f"HAG(here) {{{socket.gethostname()}}}\n"
    "ASG(DEFAULT) { RULE(1, READ) }\n"
    "ASG(RUNCONTROL) { RULE(1, READ) RULE(1, WRITE) { UAG(operators) HAG(here) } }\n")


def channel(user: str, pv: str, host: str | None = None):
    context = Context(client_name=user, host_name=host or socket.gethostname())
    (chan,) = context.get_pvs(pv, timeout=5)
    chan.wait_for_connection(timeout=10)
    return context, chan


def start_ioc(kafka, topics, tmp_path, acf):
    """The run-control IOC in its own process under `acf`: (prefix, its log, the process)."""
    prefix = f"TE:{topics.instrument}:"
    log = tmp_path / "ioc.log"
    with open(log, "wb") as out:
        ioc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "ioc", "--instrument", topics.instrument,
             "--prefix", prefix, "--broker", kafka.bootstrap, "--data-dir", str(tmp_path),
             "--ca-port", str(EPICS_PORTS.run_control_ca), "--access-security", str(acf)],
            stdout=out, stderr=subprocess.STDOUT,
            env=os.environ | EPICS_PORTS.server_env(EPICS_PORTS.run_control_ca))
    try:
        wait_until(lambda: ca_readable(prefix + "DAE:RUNSTATE"), 60, "the IOC")
    except BaseException:
        ioc.terminate()
        ioc.wait(20)
        raise
    return prefix, log, ioc


def test_only_the_acf_users_write_and_every_put_is_logged(kafka, topics, tmp_path):
    acf = tmp_path / "run_control.acf"
    acf.write_text(ACF)
    prefix, log, ioc = start_ioc(kafka, topics, tmp_path, acf)
    try:
        pv = prefix + "DAE:TITLE:SP"
        ctx, mallory = channel("mallory", pv)
        assert mallory.access_rights == AccessRights.READ  # reads, may not write
        assert mallory.read().data is not None
        with pytest.raises(Exception):  # noqa: B017 (caproto raises its own kinds)
            mallory.write(b"mine now", wait=True, timeout=5)
        ctx.disconnect()
        ctx, proc = channel("mallory", prefix + "DAE:BEGINRUN.PROC")  # not through a field
        assert proc.access_rights == AccessRights.READ
        ctx.disconnect()
        ctx, alice = channel("alice", pv)
        assert AccessRights.WRITE in alice.access_rights
        alice.write(b"vanadium", wait=True, timeout=5)
        assert bytes(alice.read().data).rstrip(b"\0") == b"vanadium"
        ctx.disconnect()
        text = log.read_text()
        assert f"alice {pv} new='vanadium' old=''" in text, text[-2000:]
        assert "mine now" not in text
    finally:
        ioc.terminate()
        ioc.wait(20)


def test_a_bad_acf_stops_the_ioc_with_the_reason(kafka, topics, tmp_path):
    acf = tmp_path / "bad.acf"
    acf.write_text("ASG(DEFAULT) { RULE(1, WRITE) { UAG(ghosts) } }")
    result = subprocess.run(
        [sys.executable, "-m", "launcher", "ioc", "--instrument", topics.instrument,
         "--broker", kafka.bootstrap, "--data-dir", str(tmp_path),
         "--ca-port", str(EPICS_PORTS.run_control_ca), "--access-security", str(acf)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "undefined groups: ghosts" in result.stderr


LEVELS_ACF = (
    "UAG(operators) {alice}\n"
    "ASG(DEFAULT) { RULE(1, READ) RULE(1, WRITE) }\n"
    "ASG(RUNCONTROL) { RULE(1, READ) RULE(0, WRITE) { UAG(operators) } }\n")


def test_read_only_means_read_only_and_levels_and_names_hold(kafka, topics, tmp_path):
    """Even an ACF whose DEFAULT lets everyone write leaves read-only PVs and fields
    read-only; a level-0 rule writes values and .PROC, not ASL1 fields; .PROC puts are logged;
    a client's host name cannot forge a put-log line."""
    acf = tmp_path / "levels.acf"
    acf.write_text(LEVELS_ACF)
    prefix, log, ioc = start_ioc(kafka, topics, tmp_path, acf)
    try:
        for pv in ("DAE:RUNSTATE", "DAE:RUNSTATE.SEVR", "DAE:TOTALCOUNTS",
                   "DAE:TITLE.DESC", "FILEWRITER:STATE", "ED:RBNUMBER"):
            ctx, chan = channel("alice", prefix + pv)
            assert chan.access_rights == AccessRights.READ, pv
            ctx.disconnect()
        ctx, desc = channel("alice", prefix + "DAE:TITLE:SP.DESC")  # ASL1: level 0 is not
        assert desc.access_rights == AccessRights.READ
        ctx.disconnect()
        ctx, proc = channel("alice", prefix + "DAE:SAVERUN.PROC", host="evil\nforged")
        assert AccessRights.WRITE in proc.access_rights
        proc.write([1], wait=True, timeout=5)  # processes SAVERUN with its value, 0: a no-op
        ctx.disconnect()
        ctx, title = channel("alice", prefix + "DAE:TITLE:SP", host="evil\nforged")
        title.write(b"ok", wait=True, timeout=5)
        ctx.disconnect()
        wait_until(lambda: "DAE:TITLE:SP new=" in log.read_text(), 10, "the put logged")
        lines = log.read_text().splitlines()
        assert not any(line.startswith("forged") for line in lines)
        assert any("evil\\x0aforged alice " + prefix + "DAE:TITLE:SP new='ok'" in line
                   for line in lines), lines[-20:]
        assert any("DAE:SAVERUN.PROC" in line for line in lines), lines[-20:]
    finally:
        ioc.terminate()
        ioc.wait(20)
