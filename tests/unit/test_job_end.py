"""When a job that has read everything ends: at once, not after waiting for more. A small
fake consumer stands in for librdkafka's (the same job against a real broker is in
tests/integration/test_filewriter_kafka.py)."""

from __future__ import annotations

import numpy as np
from confluent_kafka import TopicPartition
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.kafka_client import KafkaSettings
from filewriter.job import JobSettings, WriteJob
from tests.unit.test_icp_file_modules import MS, START_NS, TOPIC, command


class _Message:
    def __init__(self, offset: int, payload: bytes, ts_ms: int) -> None:
        self._offset, self._payload, self._ts = offset, payload, ts_ms

    def error(self):
        return None

    def value(self) -> bytes:
        return self._payload

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, self._ts


class _Consumer:
    """A partition of `n` messages, all fetched at once; the broker's end is the last + 1.
    `cached` is the watermark the last fetch brought (-1: none yet)."""

    def __init__(self, n: int, cached: int) -> None:
        self.queue = [_Message(k, serialise_ev44("DAE", k, np.array([START_NS + k * MS]),
                                                 np.zeros(1, np.int32),
                                                 np.arange(3, dtype=np.int32),
                                                 np.ones(3, np.int32)),
                               (START_NS + k * MS) // MS)
                      for k in range(n)]
        self.end, self.cached = n, cached
        self.waits: list[float] = []  # the timeouts of consume() calls that found nothing
        self.asked = 0  # watermark requests to the broker

    def consume(self, num_messages: int = 1, timeout: float = -1):
        taken, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        if not taken:
            self.waits.append(timeout)
        return taken

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        if cached:
            return 0, self.cached
        self.asked += 1
        return 0, self.end

    def pause(self, partitions) -> None:
        pass


def _job(tmp_path, consumer: _Consumer) -> WriteJob:
    job = WriteJob(command(stop_ns=START_NS + 10 * MS), JobSettings(output_dir=tmp_path),
                   KafkaSettings("unused:9092"), clock_ns=lambda: START_NS + 3600 * 10**9)
    job.open()
    job._next_offset[(TOPIC, 0)] = 0
    job._consume(consumer, [TopicPartition(TOPIC, 0, 0)])
    job._close_file()
    return job


def test_a_job_past_its_stop_that_has_read_everything_ends_without_waiting(tmp_path):
    consumer = _Consumer(5, cached=5)
    job = _job(tmp_path, consumer)
    assert job.events_written == 15
    assert consumer.waits == [0]  # found the queue empty once, and did not wait for more
    assert consumer.asked == 1  # the broker confirmed the end the fetch reported


def test_without_a_fetched_watermark_the_job_waits_and_asks_as_before(tmp_path):
    """No watermark from a fetch yet (or one below what was read): no request to the broker
    while messages may still come; after a wait with nothing, the broker is asked."""
    consumer = _Consumer(5, cached=-1)
    job = _job(tmp_path, consumer)
    assert job.events_written == 15
    assert consumer.waits == [0, 0.2]
    assert consumer.asked == 1
