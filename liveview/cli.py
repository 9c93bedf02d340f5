"""`datastream liveview`: its options and its start."""

from __future__ import annotations

import argparse
import os

from datastream.access_config import load_acf
from datastream.epics_network import EpicsPorts
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings

HELP = "the live view: the current run's counts and histograms as PVs (<prefix>LIVE:*, PVA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pva-port", type=int, default=5077, help="its PVA server's TCP port")
    parser.add_argument("--pva-search-port", type=int, default=5078,
                        help="its PVA server's UDP search port (clients list "
                        "127.0.0.1:PORT in EPICS_PVA_ADDR_LIST; `datastream env` does)")
    parser.add_argument("--ca-port", type=int, default=5068,
                        help="its CA server's port, for the counters (0: no CA)")
    parser.add_argument("--command-topic", help="just-bin-it's command topic, where NICOS "
                        "sends its JSON configs (default <INST>_liveCommands)")
    parser.add_argument("--response-topic", help="answers to commands with a msg_id "
                        "(default <INST>_liveResponses)")
    parser.add_argument("--status-topic",
                        help="the x5f2 heartbeat (default <INST>_liveStatus)")
    parser.add_argument("--http", metavar="HOST:PORT",
                        default=os.environ.get("DATASTREAM_LIVE_HTTP"),
                        help="serve the live page there (env DATASTREAM_LIVE_HTTP)")


def main(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    from liveview.jbi_service import JbiTopics
    from liveview.service import LiveSettings, default_jbi_topics, run
    from liveview.web import parse_http

    try:  # a bad [liveview], geometry or ACF: said in one line, before anything starts
        LiveSettings.from_config(config)
        if config.access_security:
            load_acf(config.access_security)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"bad live view settings: {exc}") from None
    ports = EpicsPorts(liveview_pva=args.pva_port, liveview_pva_broadcast=args.pva_search_port,
                       liveview_ca=args.ca_port)
    jbi = default_jbi_topics(config)
    jbi = JbiTopics(args.command_topic or jbi.commands, args.response_topic or jbi.responses,
                    args.status_topic or jbi.status)
    try:
        http = parse_http(args.http) if args.http else None
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    run(config, kafka, ports, metrics_port=args.metrics_port or None, jbi_topics=jbi,
        http=http)
    return 0
