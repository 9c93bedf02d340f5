"""The `datastream` command: one subcommand per service, plus `up` for the whole instrument."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from datastream.epics_network import EpicsPorts, shell_exports
from datastream.instrument import InstrumentConfig, add_instrument_arguments, config_from_args
from datastream.kafka_client import KafkaSettings, add_kafka_arguments, settings_from_args
from datastream.logs import set_context, setup_logging

log = logging.getLogger("datastream")


def _service_parser(sub: argparse._SubParsersAction, name: str, help_text: str,
                    ) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_instrument_arguments(parser)
    add_kafka_arguments(parser, default_broker=None)
    return parser


# the services whose modules own their options and start: (command, module, serves metrics)
SERVICES = (("ioc", "ioc.main", True), ("forwarder", "forwarder.cli", False),
            ("filewriter", "filewriter.cli", True), ("liveview", "liveview.cli", True),
            ("replay", "replay.cli", False))


def _add_services(sub: argparse._SubParsersAction) -> None:
    """A subcommand per service, from its module's HELP, add_arguments and main."""
    for command, module_name, metrics in SERVICES:
        module = importlib.import_module(module_name)
        parser = _service_parser(sub, command, module.HELP)
        module.add_arguments(parser)
        if metrics:
            _add_metrics_argument(parser)
        parser.set_defaults(func=functools.partial(_run_service, module.main))


def _run_service(main, args: argparse.Namespace) -> int:
    config, kafka = _config_and_kafka(args)
    return main(config, kafka, args)


def _add_metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("DATASTREAM_METRICS_PORT", 0)),
                        help="serve /metrics, /healthz and /readyz on this HTTP port (0, the "
                        "default: not served; address from DATASTREAM_METRICS_HOST, default "
                        "127.0.0.1)")


def _config_and_kafka(args: argparse.Namespace) -> tuple[InstrumentConfig, KafkaSettings]:
    config = config_from_args(args)
    set_context(instrument=config.name)
    if not args.broker:
        args.broker = config.broker
    return config, settings_from_args(args)


# -- subcommands --
def cmd_broker(args: argparse.Namespace) -> int:
    from launcher.broker import embedded

    data_dir = (args.data_dir or _default_data_dir(args)) / "broker"
    if args.nodes > 1:
        nodes = embedded.cluster_nodes(data_dir, args.nodes, port=args.port)
    else:
        nodes = [embedded.BrokerConfig(data_dir=data_dir, port=args.port,
                                       controller_port=args.controller_port,
                                       metrics_port=args.metrics_port or None)]
    if args.action == "fetch":
        path = embedded.fetch_jars(quiet=not args.verbose)
        print(f"Kafka {embedded.KAFKA_VERSION} jars in {path}")
        print(f"JMX exporter in {embedded.fetch_jmx_exporter(quiet=not args.verbose)}")
    elif args.action == "start":
        pids = embedded.start_cluster(nodes)
        print(f"Kafka ({len(nodes)} node{'s' if len(nodes) > 1 else ''}, pids "
              f"{', '.join(map(str, pids))}) listening on {embedded.bootstrap_list(nodes)}; "
              f"data in {data_dir}")
    elif args.action == "stop":
        print("stopped" if embedded.stop_cluster(nodes) else "no broker was running")
    elif args.action == "status":
        pids = [embedded.running_pid(node) for node in nodes]
        for node, pid in zip(nodes, pids, strict=True):
            print(f"node {node.node_id}: " + (f"running, pid {pid}, {node.bootstrap}" if pid
                                              else "not running"))
        return 0 if all(pids) else 3
    return 0


def _default_data_dir(args: argparse.Namespace) -> Path:
    from datastream.instrument import load_config

    return load_config(Path(args.config)).data_dir


def cmd_topics(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from datastream.topic_table import TopicTableError
    from launcher.topic_ensure import TopicsRefused, ensure_topics

    config, kafka = _config_and_kafka(args)
    if args.action == "list":
        for name in config.topics.all():
            print(name)
        return 0
    check = args.action == "check"
    try:
        table = config.topic_table()
        plan = ensure_topics(kafka, config.topics, table, apply=not check)
    except TopicsRefused as exc:
        for line in exc.plan.lines() if exc.plan else []:
            print(line)
        print(f"nothing changed: {exc}", file=sys.stderr)
        return 1
    except TopicTableError as exc:
        print(f"nothing changed: {exc}", file=sys.stderr)
        return 1
    except KafkaException as exc:
        print(f"cannot reach the cluster {kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
    for line in plan.lines():
        print(line)
    drift = plan.changes or plan.refusals
    if check:
        print(f"{len(plan.unchanged)} of {len(table)} topics as the table says"
              + ("" if drift else ": no drift"))
        return 1 if drift else 0
    if not plan.changes:
        print(f"nothing to do: {len(table)} topics as the table says")
        return 0
    print(f"done: {len(plan.lines())} change(s)")
    return 0


def cmd_acls(args: argparse.Namespace) -> int:
    from launcher.kafka_acls import Principals, apply_acls, instrument_acls

    config, kafka = _config_and_kafka(args)
    named = Principals.of_instrument(config.name)
    bindings = instrument_acls(config.topics, Principals(
        args.run_control_principal or named.run_control,
        args.filewriter_principal or named.filewriter,
        args.forwarder_principal or named.forwarder,
        args.liveview_principal or named.liveview))
    if args.action == "show":
        for binding in bindings:
            print(binding)
        return 0
    print(f"{apply_acls(kafka, bindings)} ACLs in place for {config.name}")
    return 0


def cmd_se_ioc(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    db = args.db or config.sample_env_db
    if db is None or not Path(db).exists():
        raise SystemExit(f"sample-environment database not found: {db}")
    # the pvxs IOC applies a -m to the -d that follows it
    macros = ",".join(f"{k}={v}" for k, v in config.macros.items())
    # defaults, then whatever EPICS_* the caller set (the supervisor sets them all), then flags
    defaults = EpicsPorts(sample_env_ca=args.ca_port, pva_server=args.pva_port)
    inherited = {k: v for k, v in os.environ.items() if k.startswith("EPICS_")}
    env = os.environ | defaults.server_env(args.ca_port) | inherited | {
        "EPICS_CA_SERVER_PORT": str(args.ca_port), "EPICS_CAS_SERVER_PORT": str(args.ca_port),
        "EPICS_PVAS_SERVER_PORT": str(args.pva_port), "EPICS_PVA_SERVER_PORT": str(args.pva_port)}
    acf = args.access_security or config.access_security
    proc = subprocess.Popen([sys.executable, "-m", "launcher.pvxs_ioc", "-m", macros,
                             "-d", str(db), *(["--acf", str(acf)] if acf else [])],
                            env=env, stdin=subprocess.PIPE)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
    finally:
        if proc.stdin:
            proc.stdin.close()


def cmd_doctor(args: argparse.Namespace) -> int:
    from launcher.doctor import doctor
    from launcher.up import metrics_ports

    config, kafka = _config_and_kafka(args)
    services: dict[str, str] = {}
    for item in args.service or []:
        name, _, address = item.partition("=")
        if not address:
            raise SystemExit(f"--service {item!r}: give NAME=HOST:PORT")
        services[name] = address
    if not services:  # the ports `datastream up` gives them
        services = {name: f"127.0.0.1:{port}" for name, port in
                    metrics_ports(args.metrics_port).items() if name != "kafka-broker"}
    return doctor(config, kafka, services)


def cmd_h5clear(args: argparse.Namespace) -> int:
    from filewriter.recovery import RecoveryError, clear_status_flags

    failed = 0
    for path in args.files:
        try:
            cleared = clear_status_flags(path)
        except (OSError, RecoveryError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {'cleared' if cleared else 'nothing to clear'}")
    return 1 if failed else 0


def cmd_env(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    state = config.data_dir / "epics.json"
    ports = EpicsPorts.load(state) if state.exists() else EpicsPorts()
    broker = config.data_dir / "broker.txt"
    print(shell_exports(ports.client_env() | {
        # ibex_bluesky_core's RunEngine publishes its documents to <INST>_bluesky here
        "IBEX_BLUESKY_CORE_KAFKA_BROKER":
            broker.read_text().strip() if broker.exists() else config.broker,
        "MYPVPREFIX": config.prefix}))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from launcher.up import up

    config = config_from_args(args)
    return up(config, external_broker=args.broker, ports=EpicsPorts(
        run_control_ca=args.ca_port, sample_env_ca=args.se_ca_port, pva_server=args.pva_port,
        pva_broadcast=args.pva_port + 1, repeater=args.ca_port + 1,
        liveview_pva=args.pva_port + 2, liveview_pva_broadcast=args.pva_port + 3,
        liveview_ca=args.ca_port + 4),
        broker_port=args.broker_port, config_file=Path(args.config).resolve(),
        metrics_base=args.metrics_port or None, http_port=args.http_port or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datastream", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("DATASTREAM_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default=os.environ.get("DATASTREAM_LOG_FORMAT", "text"),
                        choices=["text", "json"],
                        help="json: one JSON object a line (time, level, service, instrument, "
                        "job_id, run_number, logger, message) for journald and log shippers "
                        "(env DATASTREAM_LOG_FORMAT)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a whole local instrument: broker, topics, sample "
                        "environment IOC, run-control IOC with simulated DAE, forwarder, "
                        "file writer; Ctrl-C stops all")
    add_instrument_arguments(up)
    up.add_argument("--broker", help="use this Kafka cluster instead of starting one")
    up.add_argument("--broker-port", type=int, default=9092)
    up.add_argument("--ca-port", type=int, default=5064, help="run-control IOC CA port")
    up.add_argument("--se-ca-port", type=int, default=5066,
                    help="sample-environment IOC CA port")
    up.add_argument("--pva-port", type=int, default=5075)
    up.add_argument("--http-port", type=int, default=8090,
                    help="the live page at http://127.0.0.1:PORT/ (0: none)")
    up.add_argument("--metrics-port", type=int, default=9400,
                    help="/metrics of the run-control IOC, forwarder, file writer, live view "
                    "and embedded broker at this port +1 ... +5 (0: none); a Prometheus "
                    "config for them is written to <data-dir>/prometheus/")
    up.set_defaults(func=cmd_up)

    broker = sub.add_parser("broker", help="the embedded Kafka broker (KRaft): one node, or "
                            "a cluster on loopback with --nodes")
    broker.add_argument("action", choices=["fetch", "start", "stop", "status"])
    add_instrument_arguments(broker)
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--controller-port", type=int, default=9093)
    broker.add_argument("--nodes", type=int, default=1,
                        help="a cluster of this many nodes (ports --port, +2, +4, ...; "
                        "controllers one above each), replication 3, min.insync.replicas 2")
    broker.add_argument("--metrics-port", type=int, default=0,
                        help="the JMX exporter's /metrics on this port (per-topic rates, "
                        "replication; one node only; 0: none)")
    broker.add_argument("--verbose", action="store_true")
    broker.set_defaults(func=cmd_broker)

    topics = _service_parser(
        sub, "topics", "the instrument's topics as its topic table says (iocBoot/topics.toml, "
        "changed by iocBoot/<INST>/topics.toml): ensure creates what is missing and changes "
        "what differs (exit 0, also when nothing was to do; 1 when refused, nothing changed); "
        "check only reports drift (exit 1 when there is some); list prints the names")
    # "create" is the name earlier versions had; it now does what ensure does
    topics.add_argument("action", choices=["ensure", "check", "list", "create"])
    topics.set_defaults(func=cmd_topics)

    acls = _service_parser(sub, "acls", "the instrument's Kafka ACLs, one principal per "
                           "service (run as the cluster's admin; --sasl-* give its login)")
    acls.add_argument("action", choices=["apply", "show"])
    # the defaults are the Ansible kafka role's: <instrument, lowercase>-<service>
    acls.add_argument("--run-control-principal", help="default: <inst>-runcontrol")
    acls.add_argument("--filewriter-principal", help="default: <inst>-filewriter")
    acls.add_argument("--forwarder-principal", help="default: <inst>-forwarder")
    acls.add_argument("--liveview-principal", help="default: <inst>-liveview")
    acls.set_defaults(func=cmd_acls)

    _add_services(sub)

    se_ioc = sub.add_parser("se-ioc", help="the simulated sample environment: a real EPICS IOC "
                            "(pvxslibs) serving db/ over CA and PVA")
    add_instrument_arguments(se_ioc)
    se_ioc.add_argument("--db", type=Path)
    se_ioc.add_argument("--ca-port", type=int, default=5066)
    se_ioc.add_argument("--pva-port", type=int, default=5075)
    se_ioc.add_argument("--access-security", type=Path,
                        help="EPICS access configuration file (default: the config's "
                        "[run_control] access_security; its setpoints are in ASG SAMPLEENV, "
                        "or DEFAULT if the file has none)")
    se_ioc.set_defaults(func=cmd_se_ioc)

    doc = _service_parser(sub, "doctor", "check a running instrument, one line a check: the "
                          "broker answers, topics as the table says, this host's clock against "
                          "the broker's, each service ready (/readyz), data-disk headroom; "
                          "exit 1 if one fails")
    doc.add_argument("--service", action="append", metavar="NAME=HOST:PORT",
                     help="a service's metrics address (repeat; default: the ports `up` "
                     "gives them from --metrics-port)")
    doc.add_argument("--metrics-port", type=int, default=9400,
                     help="the base port `up` was given (default 9400)")
    doc.set_defaults(func=cmd_doctor)

    clear = sub.add_parser("h5clear", help="make a file left by a killed file writer "
                           "readable without SWMR (clears HDF5's open-for-write flags, as "
                           "HDF5's h5clear does)")
    clear.add_argument("files", type=Path, nargs="+")
    clear.set_defaults(func=cmd_h5clear)

    env = sub.add_parser("env", help="print the EPICS client environment of the local "
                         "instrument: eval \"$(datastream env)\"")
    add_instrument_arguments(env)
    env.set_defaults(func=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format, service=args.command)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
