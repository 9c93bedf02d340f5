"""The sample-environment IOC (a real pvxs IOC) under the site's EPICS access configuration:
its setpoints (ASG SAMPLEENV) follow the file's rules; its readings are read-only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from caproto import AccessRights
from caproto.threading.client import Context

from datastream.paths import REPO_ROOT
from tests.conftest import EPICS_PORTS, ca_readable, wait_until

pytestmark = pytest.mark.integration

ACF = (
    "UAG(operators) {alice}\n"
    "ASG(DEFAULT) { RULE(1, READ) }\n"
    "ASG(SAMPLEENV) { RULE(1, READ) RULE(1, WRITE) { UAG(operators) } }\n")


def rights(user: str, pv: str) -> AccessRights:
    context = Context(client_name=user, host_name=socket.gethostname())
    try:
        (chan,) = context.get_pvs(pv, timeout=5)
        chan.wait_for_connection(timeout=10)
        return chan.access_rights
    finally:
        context.disconnect()


def test_the_site_acf_guards_the_sample_environment(tmp_path):
    acf = tmp_path / "site.acf"
    acf.write_text(ACF)
    port = EPICS_PORTS.sample_env_ca
    ioc = subprocess.Popen(
        [sys.executable, "-m", "launcher.pvxs_ioc", "-m", "P=TE:SEA:",
         "-d", str(REPO_ROOT / "db" / "sample_env.db"), "--acf", str(acf)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=os.environ | EPICS_PORTS.server_env(port))
    try:
        wait_until(lambda: ca_readable("TE:SEA:SE:TEMP"), 30, "the IOC")
        assert AccessRights.WRITE in rights("alice", "TE:SEA:SE:TEMP:SP")
        assert AccessRights.WRITE in rights("alice", "TE:SEA:CS:SB:TEMP:RC:LOW")
        assert rights("mallory", "TE:SEA:SE:TEMP:SP") == AccessRights.READ
        assert rights("alice", "TE:SEA:SE:TEMP") == AccessRights.READ  # a reading
    finally:
        ioc.stdin.close()
        ioc.wait(20)
