"""The file writer's Prometheus metrics, read at each scrape. `worker_state` is the name
kafka-to-nexus reports its state under (0 idle, 1 writing)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from datastream.metrics import counter, gauge

if TYPE_CHECKING:
    from filewriter.service import FileWriterService


def collect(service: FileWriterService) -> Iterable[Metric]:
    job = service.running_job
    yield gauge("worker_state", "0 idle, 1 writing a file", 0 if job is None else 1)
    yield gauge("filewriter_current_job", "1 for the job being written",
                {(job.command.job_id, job.command.filename): 1} if job else {},
                labels=["job_id", "file_name"])
    yield counter("filewriter_jobs", "jobs finished here, by outcome",
                  {(k,): v for k, v in {"succeeded": 0, "failed": 0, "handed_on": 0,
                                        "discarded": 0, **service.jobs_finished}.items()},
                  labels=["outcome"])
    yield counter("filewriter_events_written", "neutron events written to files",
                  service.events_finished + (job.events_written if job else 0))
    yield counter("filewriter_bytes_read", "message bytes read from Kafka into files",
                  service.bytes_finished + (job.bytes_read if job else 0))
    yield gauge("filewriter_lag_messages", "messages of the job's data topics not yet read",
                {(topic,): n for topic, n in (job.lag.items() if job else ())},
                labels=["topic"])
    yield gauge("filewriter_queued_bytes", "read from Kafka, not yet flushed to the file",
                job.queued_bytes if job else 0)
    yield counter("filewriter_bad_commands", "malformed or refused command messages",
                  service.malformed_commands)
    usage = shutil.disk_usage(service.settings.job.output_dir)
    yield gauge("datastream_data_disk_free_bytes", "free space where the files go",
                usage.free)
    yield gauge("datastream_data_disk_used_ratio", "used part of the files' disk (0-1)",
                usage.used / usage.total if usage.total else 0.0)
