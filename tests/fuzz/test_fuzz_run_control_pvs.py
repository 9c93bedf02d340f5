"""Every writable PV of the real run-control IOC (its own process) fuzzed over Channel Access:
NaN, ±inf, huge and negative numbers, long and control-character strings, raw bytes, the
wrong type. The IOC never exits, a refused put never changes the state it guards, and a run
then begins and aborts as usual. Seeds are printed (hypothesis' print_blob; FUZZ_SEED=n
repeats one)."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Callable

import caproto as ca
import pytest
from caproto import ChannelType
from caproto.threading.client import Context, VirtualCircuitManager
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ioc.dae_pvs import DaePVs
from ioc.experiment_pvs import ExperimentPVs
from ioc.pvgroups import FileWriterPVs
from ioc.veto_pvs import VetoPVs
from tests.conftest import EPICS_PORTS, ca_readable, wait_until

pytestmark = [pytest.mark.fuzz, pytest.mark.integration, pytest.mark.timeout(600)]


def writable(group: type, prefix: str) -> list[str]:
    return sorted(prefix + prop.pvspec.name for prop in group._pvs_.values()
                  if not prop.pvspec.read_only)


PVS = (writable(DaePVs, "DAE:") + writable(VetoPVs, "DAE:") + writable(ExperimentPVs, "ED:")
       + writable(FileWriterPVs, "FILEWRITER:"))

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 2**31, -2**31, 2**63]),
    st.integers(min_value=-2**31, max_value=2**31 - 1),
    st.text(max_size=200), st.text(min_size=5000, max_size=20_000),
    st.sampled_from(["1", "0", "\x00", "\n\r\x1b[2J", "\u202eevil", "<Cluster/>",
                     "78" * 3000, "../../etc/passwd", "/dev/zero"]),
    st.binary(max_size=300),
    st.lists(st.integers(min_value=0, max_value=255), max_size=50))


def _seeded(test):
    value = os.environ.get("FUZZ_SEED")
    return seed(int(value))(test) if value else test


def _hearing_refusals(process: Callable[[VirtualCircuitManager, object], None],
                      ) -> Callable[[VirtualCircuitManager, object], None]:
    """A circuit's command handler that also hands the IOC's ErrorResponse to the refused put
    waiting for it. caproto's threading client matches only a WriteNotifyResponse to the put
    that waits, and drops the ErrorResponse the server sends when it refuses one: two puts
    in three then waited out their whole timeout (0.3 s each, most of the test's time) after
    the IOC had answered."""

    def process_command(circuit: VirtualCircuitManager, command: object) -> None:
        process(circuit, command)
        if (isinstance(command, ca.ErrorResponse)
                and command.original_request.command == ca.WriteNotifyRequest.ID):
            # the refused request's header: its parameter2 is the put's ioid
            waiting = circuit.ioids.pop(command.original_request.parameter2, None)
            if waiting is not None and "event" in waiting:
                waiting["response"] = command
                waiting["event"].set()

    return process_command


@pytest.fixture(scope="module")
def ioc(kafka, tmp_path_factory):
    from datastream.instrument import InstrumentConfig, write_config
    from launcher.topic_ensure import ensure_topics

    tmp = tmp_path_factory.mktemp("fuzz-ioc")
    prefix = "TE:FZRC:"
    # no file writer here: an ENDRUN's put waits for one only this long
    config = InstrumentConfig(name="FZRC", prefix=prefix, data_dir=tmp, end_timeout_s=1,
                              broker=kafka.bootstrap)
    ensure_topics(kafka, config.topics)
    log = tmp / "ioc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "ioc", "--config",
             str(write_config(config, tmp / "config.toml")),
             "--ca-port", str(EPICS_PORTS.run_control_ca)],
            stdout=out, stderr=subprocess.STDOUT,
            env=os.environ | EPICS_PORTS.server_env(EPICS_PORTS.run_control_ca))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VirtualCircuitManager, "_process_command",
                      _hearing_refusals(VirtualCircuitManager._process_command))
        context = Context()
        try:
            wait_until(lambda: ca_readable(prefix + "DAE:RUNSTATE"), 60, "the IOC")
            yield proc, prefix, context, log
        finally:
            context.disconnect()
            proc.terminate()
            proc.wait(20)


def _put(context: Context, name: str, value: object) -> None:
    (chan,) = context.get_pvs(name, timeout=5)
    chan.wait_for_connection(timeout=10)
    data = value
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    # a refusal is an answer; a dead IOC is the failure
    with contextlib.suppress(Exception):
        # the put returns on the IOC's answer, accepted or refused; one that never comes is
        # waited for only briefly: what counts is the IOC (the suite's budget sets the wait)
        chan.write(data if isinstance(data, bytes | list) else [data], wait=True, timeout=0.3)


@_seeded
@settings(max_examples=int(os.environ.get("FUZZ_PV_EXAMPLES", 120)), deadline=None,
          print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(name=st.sampled_from(PVS), value=VALUES)
def test_no_put_stops_the_ioc(ioc, name, value) -> None:
    proc, prefix, context, log = ioc
    _put(context, prefix + name, value)
    assert proc.poll() is None, f"the IOC exited on {name} = {value!r}:\n" \
        + log.read_text()[-3000:]


def test_after_the_fuzzing_a_run_begins_and_aborts(ioc) -> None:
    proc, prefix, context, log = ioc
    (state,) = context.get_pvs(prefix + "DAE:RUNSTATE", timeout=5)
    for command in ("DAE:ENDRUN", "DAE:ABORTRUN"):  # whatever the fuzzing left running
        _put(context, prefix + command, 1)
    wait_until(lambda: state.read(data_type=ChannelType.STRING).data[0] == b"SETUP", 90,
               "SETUP after the fuzzing")
    _put(context, prefix + "DAE:BEGINRUN", 1)
    (errors,) = context.get_pvs(prefix + "DAE:ERRMSGS", timeout=5)

    def begun_or_refused() -> bool:
        # whatever settings the fuzzing left, a BEGINRUN starts a run or says why not:
        # never a silent no
        running = state.read(data_type=ChannelType.STRING).data[0] == b"RUNNING"
        return running or bool(bytes(errors.read().data).rstrip(b"\0"))

    wait_until(begun_or_refused, 30, "RUNNING, or the reason in ERRMSGS")
    print("after the fuzzing:", state.read(data_type=ChannelType.STRING).data[0],
          bytes(errors.read().data).rstrip(b"\0")[:300])
    _put(context, prefix + "DAE:ABORTRUN", 1)
    wait_until(lambda: state.read(data_type=ChannelType.STRING).data[0] == b"SETUP", 30, "SETUP")
    assert proc.poll() is None
    # no put may end one of the IOC's threads either (NUMPERIODS:SP 0 once ended the DAE's)
    text = log.read_text(errors="replace")
    assert "Exception in thread" not in text, text[text.find("Exception in thread"):][:3000]
