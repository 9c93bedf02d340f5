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


def channel(user: str, pv: str):
    context = Context(client_name=user, host_name=socket.gethostname())
    (chan,) = context.get_pvs(pv, timeout=5)
    chan.wait_for_connection(timeout=10)
    return context, chan


def test_only_the_acf_users_write_and_every_put_is_logged(kafka, topics, tmp_path):
    acf = tmp_path / "run_control.acf"
    acf.write_text(ACF)
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
