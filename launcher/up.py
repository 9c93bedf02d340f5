"""`datastream up`: a whole local instrument on one machine, supervised until Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from datastream.epics_network import EpicsPorts, shell_exports, with_site_addresses
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_admin
from launcher.processes import ServiceProcess, datastream_argv
from launcher.prometheus_config import write_prometheus_config
from launcher.supervision import SUPERVISOR_STATE, RestartPolicy
from launcher.topic_ensure import TopicsRefused, ensure_topics

log = logging.getLogger(__name__)

# `up --metrics-port BASE`: each service's /metrics at BASE + its offset, the broker's too
METRICS_OFFSETS = {"run-control-ioc": 1, "forwarder": 2, "filewriter": 3, "liveview": 4,
                   "kafka-broker": 5}


def metrics_ports(base: int | None) -> dict[str, int]:
    return {name: base + offset for name, offset in METRICS_OFFSETS.items()} if base else {}


def instrument_services(config: InstrumentConfig, bootstrap: str, ports: EpicsPorts,
                        config_file: Path | None = None,
                        metrics: dict[str, int] | None = None,
                        http_port: int | None = None) -> list[ServiceProcess]:
    """The instrument's processes, in start order; `metrics`: service name -> its
    /metrics port; `http_port`: the live page's, on loopback."""
    metrics = metrics or {}

    def served(name: str) -> list[str]:
        return ["--metrics-port", str(metrics[name])] if name in metrics else []

    common = ["--instrument", config.name, "--prefix", config.prefix,
              "--data-dir", str(config.data_dir)]
    if config_file is not None:
        common = ["--config", str(config_file), *common]
    kafka = ["--broker", bootstrap]
    logs = config.data_dir / "logs"
    client = with_site_addresses(ports.client_env(), os.environ)
    return [
        ServiceProcess("sample-env-ioc", datastream_argv(
            "se-ioc", *common, "--ca-port", str(ports.sample_env_ca),
            "--pva-port", str(ports.pva_server)),
            ports.server_env(ports.sample_env_ca), logs / "sample-env-ioc.log"),
        ServiceProcess("filewriter", datastream_argv(
            "filewriter", *common, *kafka, *served("filewriter")), client,
            logs / "filewriter.log"),
        ServiceProcess("run-control-ioc", datastream_argv(
            "ioc", *common, *kafka, "--ca-port", str(ports.run_control_ca),
            *served("run-control-ioc")),
            ports.server_env(ports.run_control_ca), logs / "run-control-ioc.log"),
        ServiceProcess("forwarder", datastream_argv(
            "forwarder", *common, *kafka, *served("forwarder")), client,
            logs / "forwarder.log"),
        ServiceProcess("liveview", datastream_argv(
            "liveview", *common, *kafka, "--pva-port", str(ports.liveview_pva),
            "--pva-search-port", str(ports.liveview_pva_broadcast),
            "--ca-port", str(ports.liveview_ca), *served("liveview"),
            *(["--http", f"127.0.0.1:{http_port}"] if http_port else [])),
            client, logs / "liveview.log"),
    ]


class EmbeddedBrokerProcess:
    """The embedded broker as `up` supervises it, alike a ServiceProcess: restarted when it
    dies, reaped (it is this process's child), stopped last."""

    name = "kafka-broker"

    def __init__(self, config: object) -> None:
        self.config = config
        self.restarts = 0
        self.log_path = config.console_log
        self.proc = None

    def start(self) -> None:
        from launcher.broker import embedded

        embedded.start(self.config)

    def alive(self) -> bool:
        from launcher.broker import embedded

        return embedded.running_pid(self.config) is not None

    def stop(self) -> None:
        from launcher.broker import embedded

        embedded.stop(self.config)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def wait_until_ready(config: InstrumentConfig, kafka: KafkaSettings,
                     timeout: float = 120.0) -> list[str]:
    """Wait for every service to say it is ready: the file writer's heartbeat (sent only
    once it holds its place in the job pool), the forwarder's status, and the run-control
    IOC answering over CA. Returns the names of those that did not within the timeout."""
    from caproto.sync.client import read as ca_read

    from datastream.schemas import schema_id
    from datastream.topic_listener import TopicListener

    beats = {"file writer": threading.Event(), "forwarder": threading.Event()}

    def heartbeat(name: str):
        return lambda payload: schema_id(payload) == "x5f2" and beats[name].set()

    listeners = [TopicListener(kafka, config.topics.run_info, heartbeat("file writer")),
                 TopicListener(kafka, config.topics.writer_status, heartbeat("file writer")),
                 TopicListener(kafka, config.topics.forwarder_status, heartbeat("forwarder"))]
    for listener in listeners:
        listener.start()

    def ioc_answers() -> bool:
        try:
            # no repeater: caproto would spawn one on 0.0.0.0 that outlives `up`; a client
            # searching a unicast address list needs no beacons
            return ca_read(f"{config.prefix}DAE:RUNSTATE", timeout=1,
                           repeater=False) is not None
        except Exception:
            return False

    deadline = time.monotonic() + timeout
    try:
        ioc = False
        while time.monotonic() < deadline:
            ioc = ioc or ioc_answers()
            if ioc and all(e.is_set() for e in beats.values()):
                return []
            time.sleep(0.5)
        return [n for n, e in beats.items() if not e.is_set()] + (
            [] if ioc else ["run-control IOC"])
    finally:
        for listener in listeners:
            listener.close()


def up(config: InstrumentConfig, external_broker: str | None, ports: EpicsPorts,
       broker_port: int = 9092,
       config_file: Path | None = None, metrics_base: int | None = None,
       http_port: int | None = None) -> int:
    from launcher.broker import embedded

    config.data_dir.mkdir(parents=True, exist_ok=True)
    ports.save(config.data_dir / "epics.json")
    # `datastream env` hands clients that publish to Kafka themselves (ibex_bluesky_core's
    # RunEngine) this instrument's broker
    (config.data_dir / "broker.txt").write_text(
        external_broker or f"127.0.0.1:{broker_port}")
    # this process reads the IOC over CA to know it is up
    os.environ.update(with_site_addresses(ports.client_env(), os.environ))
    supervised: list = []
    metrics = metrics_ports(metrics_base)
    if external_broker:
        bootstrap = external_broker
        metrics.pop("kafka-broker", None)
    else:
        broker = EmbeddedBrokerProcess(embedded.BrokerConfig(
            config.data_dir / "broker", port=broker_port, controller_port=broker_port + 1,
            metrics_port=metrics.get("kafka-broker")))
        print(f"starting Kafka {embedded.KAFKA_VERSION} on {broker.config.bootstrap} ...",
              flush=True)
        broker.start()
        bootstrap = broker.config.bootstrap
        supervised.append(broker)
    kafka = KafkaSettings(bootstrap)
    _ensure_topics(config, kafka)

    services = instrument_services(config, bootstrap, ports, config_file, metrics, http_port)
    if metrics:
        write_prometheus_config(config.data_dir / "prometheus" / "prometheus.yml", config.name,
                                {name: f"127.0.0.1:{port}" for name, port in metrics.items()})
    supervised.extend(services)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for service in services:
        service.start()
    print("waiting for every service to be ready ...", flush=True)
    late = wait_until_ready(config, kafka)
    if late:
        print(f"!! not ready after 120 s: {', '.join(late)}; see {config.data_dir / 'logs'}/",
              flush=True)
    _print_summary(config, bootstrap, ports, services, metrics, http_port)
    policy = RestartPolicy()
    state = config.data_dir / SUPERVISOR_STATE
    policy.save(state)
    try:
        while not stop.wait(1.0):
            now = time.monotonic()
            for service in supervised:
                if not service.alive():
                    _supervise(service, policy, now, state)
    finally:
        print("\nstopping ...", flush=True)
        for service in reversed(supervised):
            service.stop()
        print("stopped.")
    return 0


def _ensure_topics(config: InstrumentConfig, kafka: KafkaSettings) -> None:
    """The topics as the table says. On a cluster someone else runs (--broker) a difference
    ensure may not fix (replication, fewer partitions) is printed and `up` goes on, as long
    as every topic exists."""
    try:
        plan = ensure_topics(kafka, config.topics, config.topic_table())
    except TopicsRefused as exc:
        missing = set(config.topics.all()) - set(
            make_admin(kafka).list_topics(timeout=10).topics)
        if missing:
            raise
        print(f"!! topics differ from the table, left as they are: {exc}", flush=True)
        return
    for line in plan.lines():
        print(f"topics: {line}", flush=True)


def _supervise(service: ServiceProcess, policy: RestartPolicy, now: float,
               state: Path) -> None:
    """A dead service: said once, restarted when its back-off is over, or given up (one
    line, and `datastream doctor` fails) after too many restarts in the window."""
    decision = policy.died(service.name, now)
    if decision == "restart":
        code = service.proc.returncode if getattr(service, "proc", None) else None
        print(f"\n!! {service.name} exited with code {code}; last lines of "
              f"{service.log_path}:\n{service.log_tail(1500)}", flush=True)
    elif decision == "give up":
        print(f"!! {service.name} failed {policy.burst} times within {policy.window_s:.0f} s; "
              f"not restarting it again (restart `up` once the cause is fixed; see "
              f"{service.log_path})", flush=True)
        policy.save(state)
        return
    if not policy.due(service.name, now):
        return
    service.restarts = policy.restarts(service.name, now)
    print(f"restarting {service.name} ({service.restarts} in the last "
          f"{policy.window_s:.0f} s)", flush=True)
    try:
        service.start()
    except Exception as exc:  # dead still: decided on again at the next check
        print(f"!! {service.name} did not start: {exc}", flush=True)


def _print_summary(config: InstrumentConfig, bootstrap: str, ports: EpicsPorts,
                   services: list[ServiceProcess], metrics: dict[str, int],
                   http_port: int | None) -> None:
    p = config.prefix
    scrape = (f"""
  Metrics          {', '.join(f'{n} :{port}' for n, port in metrics.items())}
                   (http://127.0.0.1:PORT/metrics, /healthz, /readyz); Prometheus:
                   prometheus --config.file={config.data_dir / 'prometheus' / 'prometheus.yml'}"""
              if metrics else "")
    print(f"""
Instrument {config.name} is up and ready.
  Kafka broker     {bootstrap}   (topics {config.name}_runInfo, _events, _sampleEnv, ...)
  PV prefix        {p}   run control {p}DAE:*, file writer {p}FILEWRITER:*
  Sample env PVs   {p}SE:*  (real EPICS IOC, CA port {ports.sample_env_ca}, PVA {ports.pva_server})
  Live view PVs    {p}LIVE:*  (PVA port {ports.liveview_pva}, counters on CA port
                   {ports.liveview_ca} too; e.g. {p}LIVE:EVENTS)
  Live page        {f"http://127.0.0.1:{http_port}/" if http_port else "(none: --http-port 0)"}
  Live histograms  just-bin-it commands on {config.name}_liveCommands (NICOS)
  NeXus files      {config.files_dir}/{config.name}NNNNNNNN.nxs
  Logs             {config.data_dir / 'logs'}/{scrape}
  Processes        {', '.join(f'{s.name} (pid {s.proc.pid})' for s in services if s.proc)}

In another shell (the IOCs listen on loopback only):
{shell_exports(ports.client_env())}
  .venv/bin/caproto-put -S {p}DAE:TITLE:SP "my sample"   # or caput -S with EPICS base
  .venv/bin/caproto-put {p}DAE:BEGINRUN 1
  .venv/bin/caproto-monitor {p}DAE:RUNSTATE {p}DAE:TOTALCOUNTS {p}FILEWRITER:STATE
  .venv/bin/caproto-put {p}DAE:ENDRUN 1
(or: eval "$(.venv/bin/datastream env)")    Ctrl-C stops everything.
""", flush=True)
