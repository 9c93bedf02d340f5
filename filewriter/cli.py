"""`datastream filewriter`: its options and its start."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings

HELP = "write NeXus files from run start/stop commands"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path,
                        help="where files go (default: the data dir)")
    parser.add_argument("--lookback", type=float, default=10.0,
                        help="seconds before the start time to begin reading each data topic")
    parser.add_argument("--leeway", type=float, default=1.0,
                        help="seconds after the stop time to wait for late data")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--max-queued-mb", type=int, default=64,
                        help="data fetched but not yet written, at most; a slow disk then "
                        "slows the reading instead of growing memory")
    parser.add_argument("--group", help="consumer group of the job pool (writers sharing it "
                        "share the jobs)")
    parser.add_argument("--instance-id", help="this writer's fixed identity in the job pool "
                        "(default: group-hostname); give each writer on one host its own")
    parser.add_argument("--reports-apart", action="store_true",
                        default=os.environ.get("DATASTREAM_FILEWRITER_REPORTS_APART") == "1",
                        help="send every answ, wrdn and x5f2 to <INST>_writerStatus instead "
                        "of <INST>_runInfo, so the writer needs no write access to the topic "
                        "of run starts (Kafka ACLs)")


def main(config: InstrumentConfig, kafka: KafkaSettings, args: argparse.Namespace) -> int:
    from filewriter.job import JobSettings
    from filewriter.service import run

    job = JobSettings(output_dir=(args.output_dir or config.files_dir).resolve(),
                      lookback_s=args.lookback, leeway_s=args.leeway,
                      flush_interval_s=args.flush_interval,
                      max_queued_mb=args.max_queued_mb)
    run(config.topics.run_info, kafka, job, group_id=args.group or f"filewriter-{config.name}",
        instance_id=args.instance_id,
        status_topic=config.topics.writer_status if args.reports_apart else None,
        metrics_port=args.metrics_port or None, instrument=config.name)
    return 0
