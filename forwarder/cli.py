"""`datastream forwarder`: its options and its start."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings
from forwarder.options import add_arguments as add_option_arguments

HELP = "forward EPICS PVs (CA, PVA) to Kafka"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=Path,
                        help="stream config JSON (default: the config's)")
    add_option_arguments(parser)


def main(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    from forwarder.options import OptionError, resolve_options
    from forwarder.service import run

    if args.streams:
        config = replace(config, streams_file=args.streams.resolve())
    try:
        options = resolve_options(args, Path(args.config))
    except OptionError as exc:
        raise SystemExit(str(exc)) from exc
    with contextlib.suppress(KeyboardInterrupt):
        run(config, kafka, options=options)
    return 0
