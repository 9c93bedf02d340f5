"""`datastream replay FILE`: its options and its start."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import uuid
from pathlib import Path

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings

log = logging.getLogger(__name__)

HELP = ("stream a NeXus event file into the instrument's topics as a live run: pl72, pu00 "
        "and ev44 pulse by pulse, its logs as f144, 6s4t; times shifted to now")


def _speed(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text}: a speed is 0 (as fast as possible) or "
                                         "above")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text}: seconds since the run's start, >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from replay.pacing import DEFAULT_MAX_LEAD_S

    parser.add_argument("file", type=Path, help="the NeXus event file (this project's, "
                        "ISIS's or kafka-to-nexus's)")
    parser.add_argument("--speed", type=_speed, default=1.0,
                        help="1: the run's own pace (default); 2: twice as fast; 0: as fast "
                        "as possible")
    parser.add_argument("--loop", action="store_true",
                        help="replay again and again (Ctrl-C ends), each time a new run: "
                        "fresh job id, the next run number")
    parser.add_argument("--run-number", type=int,
                        help="the first replayed run's number (default: the file's own); "
                        "each --loop adds one")
    parser.add_argument("--from", dest="from_s", type=_seconds, default=0.0, metavar="S",
                        help="start this many seconds after the run's start")
    parser.add_argument("--to", dest="to_s", type=_seconds, metavar="S",
                        help="end this many seconds after the run's start (default: its end)")
    parser.add_argument("--events-source", help="the detector's source name (default: the "
                        "config's [dae] source_name, else DAE)")
    parser.add_argument("--max-lead", type=float, default=DEFAULT_MAX_LEAD_S, metavar="S",
                        help="never stamp a message more than this far ahead of the wall "
                        "clock (brokers refuse timestamps too far in the future; default "
                        "%(default)s)")
    parser.add_argument("--progress-interval", type=float, default=2.0, metavar="S",
                        help="seconds between progress lines on stderr (default %(default)s)")


def main(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from replay.errors import ReplayError

    try:
        return _replay(config, kafka, args)
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except KafkaException as exc:
        print(f"replay: Kafka {kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _replay(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    from datastream.kafka_client import make_producer
    from datastream.time_channels import TimeChannels
    from datastream.topics import InstrumentTopics
    from replay.errors import ReplayError
    from replay.producer import NS_PER_MS, Replayer, Window
    from replay.run_file import open_run_file
    from replay.run_start import RunIdentity

    if args.to_s is not None and args.to_s <= args.from_s:
        raise ReplayError(f"--to {args.to_s} must be after --from {args.from_s}")
    with open_run_file(args.file) as run:
        for warning in run.warnings:
            log.warning("%s", warning)
        # --instrument names the instrument; else the file's own; else the config's
        instrument = config.name if args.instrument else (run.instrument or config.name)
        topics = InstrumentTopics(instrument)
        tcb = run.time_channels() or TimeChannels(*config.time_channels())
        source = args.events_source or str(config.dae.get("source_name", "DAE"))
        # large batches: ev44 messages are up to 800 kB, and at speed 0 the rate is the point
        producer = make_producer(kafka, linger_ms=20, batch_size=16 * 1024 * 1024)
        replayer = Replayer(producer, topics, source, args.speed, args.max_lead, kafka.bootstrap,
                            args.progress_interval)
        window = Window(args.from_s, args.to_s)
        first = args.run_number if args.run_number is not None else (run.run_number or 1)
        log.info("replaying %s (%d events, %d detector and %d monitor event groups, %d logs) "
                 "as %s runs on %s", args.file, run.events, len(run.detectors),
                 len(run.monitors), len(run.logs), instrument, kafka.bootstrap)
        start_ms = 0
        loop = 0
        while True:
            identity = RunIdentity(instrument, first + loop, str(uuid.uuid4()))
            # a run starts now, and never before the last one stopped: at speed 0 that stop
            # may lie ahead, and the runs' windows must not overlap
            start_ms = max(time.time_ns() // NS_PER_MS, start_ms)
            sent = replayer.replay(run, identity, start_ms, window, tcb)
            print(f"run {identity.run_number} ({identity.filename}, job {identity.job_id}): "
                  f"{sent.events:,} events in {sent.pulses:,} pulses, {sent.log_values:,} "
                  f"log values in {sent.seconds:.1f} s "
                  f"({sent.events / max(sent.seconds, 1e-9) / 1e6:.2f} M events/s)",
                  flush=True)
            if not args.loop:
                return 0
            start_ms = sent.stop_ms
            loop += 1
