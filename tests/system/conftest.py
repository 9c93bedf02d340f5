"""The whole instrument as `datastream up` runs it: real broker, real EPICS IOC for the sample
environment, run-control IOC, forwarder and file writer, each its own process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datastream.instrument import InstrumentConfig, load_config, write_config
from datastream.kafka_client import KafkaSettings
from datastream.paths import REPO_ROOT
from launcher.processes import ServiceProcess
from launcher.topic_ensure import ensure_topics
from launcher.up import instrument_services
from tests.conftest import EPICS_PORTS, free_port, wait_until

INSTRUMENT = "SYS"
PREFIX = "TE:SYS:"


@dataclass
class Instrument:
    config_path: Path
    data_dir: Path
    kafka: KafkaSettings
    services: dict[str, ServiceProcess]
    # service name -> port of its /metrics, /healthz, /readyz
    metrics: dict[str, int]
    http_port: int = 0  # the live page's
    prefix: str = PREFIX

    def pv(self, suffix: str) -> str:
        return self.prefix + suffix

    def restart(self, name: str) -> None:
        self.services[name].stop()
        self.services[name].start()

    def logs(self) -> str:
        return "\n".join(f"===== {s.name}\n{s.log_tail(4000)}" for s in self.services.values())


def _write_config(d: Path, dae: dict | None = None) -> Path:
    return write_config(InstrumentConfig(
        name=INSTRUMENT, prefix=PREFIX, data_dir=d, end_timeout_s=30,
        dae={"frame_rate_hz": 20.0, "events_per_frame": 300, "pixels": 1024} | (dae or {}),
        sample_env_db=REPO_ROOT / "db" / "sample_env.db",
        streams_file=REPO_ROOT / "iocBoot" / "DEMO" / "forwarder_streams.json",
        geometry_file=Path(__file__).with_name("SYS_geometry.toml")),
        d / "config.toml")


def forwarder_connected(kafka: KafkaSettings, topic: str) -> bool:
    """True once the forwarder's latest x5f2 status lists every stream as connected."""
    import json

    from streaming_data_types.status_x5f2 import deserialise_x5f2

    from tests.integration.conftest import read_all

    messages = read_all(kafka, topic, timeout=1)
    if not messages:
        return False
    status = json.loads(deserialise_x5f2(messages[-1].value()).status_json)
    return bool(status["streams"]) and all(s["connected"] for s in status["streams"])


def caget(pv: str, **kwargs):
    import epics

    return epics.caget(pv, timeout=5, use_monitor=False, **kwargs)


@pytest.fixture(scope="module")
def instrument(kafka: KafkaSettings, tmp_path_factory) -> Iterator[Instrument]:
    yield from start_instrument(kafka, tmp_path_factory)


def start_instrument(kafka: KafkaSettings, tmp_path_factory,
                     dae: dict | None = None) -> Iterator[Instrument]:
    """The whole instrument, `dae` changing its [dae] settings; stopped when the generator
    is closed."""
    d = tmp_path_factory.mktemp("instrument")
    config_path = _write_config(d, dae)
    config = load_config(config_path)
    ensure_topics(kafka, config.topics, config.topic_table())
    metrics = {name: free_port() for name in ("run-control-ioc", "forwarder", "filewriter",
                                               "liveview")}
    http_port = free_port()
    services = instrument_services(config, kafka.bootstrap, EPICS_PORTS, config_path, metrics,
                                   http_port)
    for service in services:
        service.start()
    inst = Instrument(config_path, d, kafka, {s.name: s for s in services}, metrics,
                      http_port=http_port)
    try:
        wait_until(lambda: caget(inst.pv("FILEWRITER:STATE"), as_string=True) == "IDLE", 90,
                   "the run-control IOC and an idle file writer")
        wait_until(lambda: caget(inst.pv("SE:TEMP")) is not None, 30, "the sample environment")
        wait_until(lambda: forwarder_connected(kafka, config.topics.forwarder_status), 60,
                   "the forwarder to connect every stream")
        yield inst
        no_thread_ended(inst.services.values())
    except BaseException:
        print(inst.logs())
        raise
    finally:
        for service in reversed(services):
            service.stop()


def no_thread_ended(services) -> None:
    """No thread of a running service ended on an exception (threading's hook prints this
    line): the process would still answer while that thread's work had stopped."""
    for service in services:
        text = service.log_tail(1 << 30)
        at = text.find("Exception in thread")
        assert at < 0, f"a thread of {service.name} ended:\n{text[at:at + 4000]}"
