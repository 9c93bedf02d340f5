"""Fixtures shared by all tests. Real servers (Kafka, EPICS IOCs) start once per session on
free loopback ports, so a running `datastream up` on the default ports does not interfere."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import pytest

from datastream.epics_network import EpicsPorts

# Below the kernel's ephemeral range (32768-60999 on Linux): a client socket bound to port 0
# can then never land on a port a test server sends to (a PVA beacon reaching a caproto search
# socket made `caproto.sync.client.read` raise RemoteProtocolError).
_TEST_PORTS = range(20000, 32000)
_random = random.Random()


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(block: int = 1) -> int:
    """A loopback port free for TCP and UDP, outside the ephemeral range; with `block`, the
    first of that many consecutive free ports (`up` derives its PVA ports from one)."""
    while True:
        base = _random.randrange(_TEST_PORTS.start, _TEST_PORTS.stop - block)
        if all(_is_free(base + i) for i in range(block)):
            return base


# EPICS clients (libca through pyepics, caproto, p4p) read their environment once, when their
# first context is made: set it before any test imports them.
EPICS_PORTS = EpicsPorts(
    run_control_ca=free_port(), sample_env_ca=free_port(),
    repeater=free_port(), pva_server=free_port(),
    pva_broadcast=free_port(), liveview_pva=free_port(),
    liveview_pva_broadcast=free_port(), liveview_ca=free_port())
os.environ.update(EPICS_PORTS.client_env())


def _no_repeater() -> None:
    """caproto's sync client spawns a CA repeater bound to 0.0.0.0 that outlives the tests
    and keeps their output pipe open. Clients here search a unicast address list and need no
    beacons, so none is spawned."""
    import caproto.sync.client

    caproto.sync.client.spawn_repeater = lambda: None


_no_repeater()


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def h5file() -> Iterator[h5py.File]:
    """An HDF5 file in memory only."""
    with h5py.File(f"mem-{time.monotonic_ns()}.nxs", "w", driver="core",
                   backing_store=False) as f:
        yield f


# the session broker's JMX exporter (per-topic rates), scraped by the monitoring test
BROKER_METRICS_PORT = free_port()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft, single node) for the whole session."""
    from launcher.broker import embedded

    port = free_port()
    config = embedded.BrokerConfig(tmp_path_factory.mktemp("kafka"), port=port,
                                   controller_port=free_port(), heap="768m",
                                   metrics_port=BROKER_METRICS_PORT)
    embedded.start(config)
    try:
        yield config.bootstrap
    finally:
        embedded.stop(config)


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str):
    from datastream.kafka_client import KafkaSettings

    return KafkaSettings(kafka_bootstrap)


class EpicsIoc:
    """A real EPICS 7 IOC (pvxslibs: CA and PVA) serving a database, in its own process."""

    def __init__(self, db: Path, macros: str, ca_port: int, log: Path) -> None:
        self.db, self.macros, self.ca_port, self.log = db, macros, ca_port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = os.environ | EPICS_PORTS.server_env(self.ca_port)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pvxslibs.ioc", "-m", self.macros, "-d", str(self.db)],
                env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc.stdin.close()


def ca_readable(pv: str) -> bool:
    from caproto.sync.client import read as ca_read

    try:
        return ca_read(pv, timeout=0.5) is not None
    except Exception:
        return False


def serve_db(directory: Path, db_text: str, prefix: str, ca_port: int, probe_pv: str,
             ) -> EpicsIoc:
    """A real EPICS IOC serving db_text with P=prefix, started and answering probe_pv."""
    (directory / "test.db").write_text(db_text)
    ioc = EpicsIoc(directory / "test.db", f"P={prefix}", ca_port, directory / "ioc.log")
    ioc.start()
    wait_until(lambda: ca_readable(probe_pv), 30, "the EPICS IOC")
    return ioc
