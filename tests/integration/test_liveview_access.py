"""EPICS access security for the live view's PVA setpoints, on its real PVA server: the
site's ACF ([run_control] access_security, the one the IOC takes) decides who may put;
another account's put is refused before anything is applied, and every put is logged."""

from __future__ import annotations

import getpass
import logging
import threading

import pytest
from p4p.client.thread import Context

from datastream.access_config import parse_acf
from datastream.instrument import InstrumentConfig
from liveview import pva_access
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.fakes import FakePut

pytestmark = pytest.mark.integration

ME = getpass.getuser()


def test_the_policy_reads_the_acf_users_and_hosts():
    acf = parse_acf("UAG(ops) {alice}\nHAG(here) {127.0.0.1}\nASG(DEFAULT) { RULE(1, READ) }\n"
                    "ASG(RUNCONTROL) { RULE(1, READ) RULE(1, WRITE) { UAG(ops) HAG(here) } }\n")
    access = pva_access.PvaAccess(acf)
    assert access.may_put(FakePut(1, account="alice", peer="127.0.0.1:5000"))
    assert not access.may_put(FakePut(1, account="mallory", peer="127.0.0.1:5000"))
    assert not access.may_put(FakePut(1, account="alice", peer="10.9.8.7:5000"))
    assert not access.may_put(FakePut(1, account="alice", peer="garbage"))
    # without a file: everyone on this host writes, as the IOC's default
    assert pva_access.PvaAccess().may_put(FakePut(1, account="anyone", peer="[::1]:5000"))


@pytest.mark.parametrize("allowed", [False, True])
def test_only_the_acf_s_users_put_a_setpoint(kafka, topics, tmp_path, caplog, allowed):
    inst = topics.instrument
    acf = tmp_path / "site.acf"
    users = f"{ME}" if allowed else "alice"
    acf.write_text(f"UAG(ops) {{{users}}}\nASG(DEFAULT) {{ RULE(1, READ) }}\n"
                   "ASG(RUNCONTROL) { RULE(1, READ) RULE(1, WRITE) { UAG(ops) } }\n")
    config = InstrumentConfig(name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path,
                              liveview={"channels": 10}, access_security=acf)
    name = f"TE:{inst}:LIVE:IMAGE:TOF_MAX:SP"
    stop = threading.Event()
    view = threading.Thread(target=run, args=(config, kafka, EPICS_PORTS, stop))
    view.start()
    ctx = Context("pva")
    try:
        before = wait_until(lambda: _get(ctx, name), 30, "the live view's setpoint")
        caplog.set_level(logging.INFO, logger="liveview.putlog")
        if allowed:
            ctx.put(name, 1234.0, timeout=5)
            assert _get(ctx, name) == 1234.0
            assert any("new=1234.0" in r.getMessage() for r in caplog.records)
        else:
            with pytest.raises(Exception, match="may not write"):
                ctx.put(name, 1234.0, timeout=5)
            assert _get(ctx, name) == before  # nothing applied
            assert any("denied" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        view.join(30)
        ctx.close()
        pva_access.set_access(None)  # the next in-process live view starts from the default
    assert not view.is_alive()


def _get(ctx: Context, name: str):
    try:
        return float(ctx.get(name, timeout=2))
    except Exception:  # not served yet
        return None
