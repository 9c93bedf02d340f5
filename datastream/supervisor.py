"""`datastream up`: a whole local instrument on one machine, supervised until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from datastream.epics_network import EpicsPorts, shell_exports
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings
from datastream.processes import ServiceProcess, datastream_argv
from datastream.topics import create_topics, wait_for_topics

log = logging.getLogger(__name__)

MAX_RESTARTS = 5


def instrument_services(config: InstrumentConfig, bootstrap: str, ports: EpicsPorts,
                        config_file: Path | None = None) -> list[ServiceProcess]:
    """The instrument's processes, in start order."""
    common = ["--instrument", config.name, "--prefix", config.prefix,
              "--data-dir", str(config.data_dir)]
    if config_file is not None:
        common = ["--config", str(config_file), *common]
    kafka = ["--broker", bootstrap]
    logs = config.data_dir / "logs"
    client = ports.client_env()
    return [
        ServiceProcess("sample-env-ioc", datastream_argv(
            "se-ioc", *common, "--ca-port", str(ports.sample_env_ca),
            "--pva-port", str(ports.pva_server)),
            ports.server_env(ports.sample_env_ca), logs / "sample-env-ioc.log"),
        ServiceProcess("filewriter", datastream_argv("filewriter", *common, *kafka), client,
                       logs / "filewriter.log"),
        ServiceProcess("run-control-ioc", datastream_argv(
            "ioc", *common, *kafka, "--ca-port", str(ports.run_control_ca)),
            ports.server_env(ports.run_control_ca), logs / "run-control-ioc.log"),
        ServiceProcess("forwarder", datastream_argv("forwarder", *common, *kafka), client,
                       logs / "forwarder.log"),
    ]


def up(config: InstrumentConfig, external_broker: str | None, ports: EpicsPorts,
       broker_port: int = 9092,
       config_file: Path | None = None) -> int:
    from datastream.broker import embedded

    config.data_dir.mkdir(parents=True, exist_ok=True)
    ports.save(config.data_dir / "epics.json")
    broker_config = None
    if external_broker:
        bootstrap = external_broker
    else:
        broker_config = embedded.BrokerConfig(config.data_dir / "broker", port=broker_port,
                                              controller_port=broker_port + 1)
        print(f"starting Kafka {embedded.KAFKA_VERSION} on {broker_config.bootstrap} ...",
              flush=True)
        embedded.start(broker_config)
        bootstrap = broker_config.bootstrap
    kafka = KafkaSettings(bootstrap)
    outcome = create_topics(kafka, config.topics)
    wait_for_topics(kafka, list(outcome))

    services = instrument_services(config, bootstrap, ports, config_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for service in services:
        service.start()
    _print_summary(config, bootstrap, ports, services)
    try:
        while not stop.wait(1.0):
            for service in services:
                if not service.alive():
                    _restart(service)
    finally:
        print("\nstopping ...", flush=True)
        for service in reversed(services):
            service.stop()
        if broker_config is not None:
            embedded.stop(broker_config)
        print("stopped.")
    return 0


def _restart(service: ServiceProcess) -> None:
    code = service.proc.returncode if service.proc else None
    print(f"\n!! {service.name} exited with code {code}; last lines of {service.log_path}:\n"
          f"{service.log_tail(1500)}", flush=True)
    if service.restarts >= MAX_RESTARTS:
        if service.restarts == MAX_RESTARTS:
            print(f"!! {service.name} failed {MAX_RESTARTS} times; not restarting it again",
                  flush=True)
            service.restarts += 1
        return
    service.restarts += 1
    time.sleep(min(30, 2 ** service.restarts))
    print(f"restarting {service.name} (attempt {service.restarts})", flush=True)
    service.start()


def _print_summary(config: InstrumentConfig, bootstrap: str, ports: EpicsPorts,
                   services: list[ServiceProcess]) -> None:
    p = config.prefix
    print(f"""
Instrument {config.name} is up.
  Kafka broker     {bootstrap}   (topics {config.name}_runInfo, _events, _sampleEnv, ...)
  PV prefix        {p}   run control {p}DAE:*, file writer {p}FILEWRITER:*
  Sample env PVs   {p}SE:*  (real EPICS IOC, CA port {ports.sample_env_ca}, PVA {ports.pva_server})
  NeXus files      {config.files_dir}/{config.name}NNNNNNNN.nxs
  Logs             {config.data_dir / 'logs'}/
  Processes        {', '.join(f'{s.name} (pid {s.proc.pid})' for s in services if s.proc)}

In another shell (the IOCs listen on loopback only):
{shell_exports(ports.client_env())}
  .venv/bin/caproto-put -S {p}DAE:TITLE:SP "my sample"   # or caput -S with EPICS base
  .venv/bin/caproto-put {p}DAE:BEGINRUN 1
  .venv/bin/caproto-monitor {p}DAE:RUNSTATE {p}DAE:TOTALCOUNTS {p}FILEWRITER:STATE
  .venv/bin/caproto-put {p}DAE:ENDRUN 1
(or: eval "$(.venv/bin/datastream env)")    Ctrl-C stops everything.
""", flush=True)
