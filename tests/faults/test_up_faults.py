"""`datastream up` as a user runs it, with its own embedded broker: a run begun the moment it
says it is ready gets its file; the broker killed mid-run is restarted by `up`; ENDRUN during
the outage leaves the run ENDING and the stop is delivered when the broker is back, with the
end time of when counting stopped; the live view reads on through the outage and counts
every event of the run; Ctrl-C stops everything."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import h5py
import pytest
from caproto import ChannelType
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write

from datastream.instrument import InstrumentConfig, write_config
from datastream.paths import REPO_ROOT
from launcher.broker.embedded import port_open
from tests.conftest import EPICS_PORTS, free_port, http_get, wait_until

pytestmark = pytest.mark.faults


def text(pv: str) -> str:
    value = ca_read(pv, timeout=2, data_type=ChannelType.STRING).data[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def number(pv: str) -> float:
    return ca_read(pv, timeout=2).data[0]


def waveform_text(pv: str) -> str:
    return bytes(ca_read(pv, timeout=2).data).rstrip(b"\0").decode()


METRICS_BASE = free_port(block=6)
LIVE_PAGE_PORT = free_port()


@pytest.fixture
def up(tmp_path):
    data = tmp_path / "data"
    config = write_config(InstrumentConfig(
        name="UPF", prefix="TE:UPF:", data_dir=data, end_timeout_s=60,
        dae={"frame_rate_hz": 25.0, "events_per_frame": 123, "pixels": 512},
        sample_env_db=REPO_ROOT / "db" / "sample_env.db",
        streams_file=REPO_ROOT / "iocBoot" / "DEMO" / "forwarder_streams.json"),
        tmp_path / "config.toml")
    out = open(tmp_path / "up.out", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "up", "--config", str(config),
         "--broker-port", str(free_port()), "--ca-port", str(EPICS_PORTS.run_control_ca),
         "--se-ca-port", str(EPICS_PORTS.sample_env_ca),
         "--pva-port", str(free_port(block=4)), "--metrics-port", str(METRICS_BASE),
         "--http-port", str(LIVE_PAGE_PORT)],
        stdout=out, stderr=subprocess.STDOUT, env=os.environ | {
            "PYTHONUNBUFFERED": "1",
            # the broker's JVM compiles with C1 only: its start-up is mostly class loading
            # and JIT work; with C2 `up` took 12-15 s to a serving broker, with C1 7 s
            # (measured on this 2-core machine, loaded); the load here never needs C2's code
            "JDK_JAVA_OPTIONS": f"{os.environ.get('JDK_JAVA_OPTIONS', '')} "
                                "-XX:TieredStopAtLevel=1".strip()})
    output = tmp_path / "up.out"
    try:
        wait_until(lambda: b"is up and ready" in output.read_bytes() or proc.poll() is not None,
                   180, "up to say it is ready")
        assert proc.poll() is None, output.read_text()
        yield proc, data, output
    except BaseException:
        print(output.read_text())
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
        out.close()


def live_events() -> int | None:
    status, body = http_get(f"http://127.0.0.1:{LIVE_PAGE_PORT}/api/live")
    return json.loads(body)["counters"].get("EVENTS") if status == 200 else None


def broker_pid(data) -> int:
    return int((data / "broker" / "broker.pid").read_text())


def test_up_ready_means_ready_and_survives_a_broker_kill(up):
    proc, data, output = up
    p = "TE:UPF:"
    # the moment `up` says so: the run is taken by the writer
    ca_write(p + "DAE:BEGINRUN", "1", notify=True, data_type=ChannelType.STRING, timeout=10)
    assert text(p + "DAE:RUNSTATE") == "RUNNING"
    run = int(number(p + "DAE:IRUNNUMBER"))
    wait_until(lambda: text(p + "FILEWRITER:STATE") == "WRITING", 15, "the writer writing")
    # the config file reached the DAE: 123 events a frame (once it has counted some)
    counted = wait_until(lambda: number(p + "DAE:TOTALCOUNTS"), 10, "the DAE to count")
    assert counted % 123 == 0
    # every service and the broker serve their metrics where `up` said
    summary = output.read_text()
    assert f"filewriter :{METRICS_BASE + 3}" in summary
    for offset in range(1, 6):
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_BASE + offset}/metrics",
                                    timeout=5) as reply:
            assert reply.status == 200
    assert (data / "prometheus" / "prometheus.yml").exists()

    old = broker_pid(data)
    os.kill(old, signal.SIGKILL)
    # gone once its port refuses: the JVM closes its sockets only after its last thread
    broker_port = int((data / "broker.txt").read_text().rsplit(":", 1)[1])
    wait_until(lambda: not port_open(broker_port), 10, "the broker to be gone")
    ended_at = time.time()
    ca_write(p + "DAE:ENDRUN", 1, notify=True, timeout=30)  # accepted: counting stops
    assert text(p + "DAE:RUNSTATE") == "ENDING"
    assert "not delivered yet" in waveform_text(p + "DAE:ERRMSGS")
    counts = number(p + "DAE:TOTALCOUNTS")
    wait_until(lambda: (data / "broker" / "broker.pid").exists() and broker_pid(data) != old,
               60, "up to restart the broker")
    wait_until(lambda: text(p + "DAE:RUNSTATE") == "SETUP", 90, "the run to end")
    assert b"kafka-broker exited" in output.read_bytes()
    assert number(p + "DAE:TOTALCOUNTS") == counts
    path = data / f"UPF{run:08d}.nxs"
    with h5py.File(path, "r") as f:
        assert len(f["raw_data_1/detector_1_events/event_id"]) == counts
        end = dt.datetime.fromisoformat(f["raw_data_1/end_time"][()].decode()).timestamp()
    assert abs(end - ended_at) < 3  # when counting stopped, not when the stop got through
    # the live view read on through the outage: its page counts every event of the run
    wait_until(lambda: live_events() == counts, 60, f"the live page to show {counts} events")

    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0
    assert b"stopped." in output.read_bytes()
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid(data) if (data / "broker" / "broker.pid").exists() else old, 0)
