"""Seeking the data topics must not lose a frame produced while the writer seeks."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44

import filewriter.job
from datastream.kafka_client import make_producer
from filewriter.commands import StartJob
from filewriter.job import JobSettings, WriteJob

pytestmark = pytest.mark.integration
MS = 1_000_000


class FrameDuringSeek:
    """The real consumer, except that the run's first frame lands on the broker right after
    the offsets-for-times lookup, as a big DAE frame does while the writer is seeking."""

    def __init__(self, consumer, produce_frame) -> None:
        self._consumer = consumer
        self._produce_frame = produce_frame

    def offsets_for_times(self, *args, **kwargs):
        result = self._consumer.offsets_for_times(*args, **kwargs)
        self._produce_frame()
        return result

    def __getattr__(self, name):
        return getattr(self._consumer, name)


def test_first_frame_produced_during_the_seek_is_written(kafka, topics, tmp_path, monkeypatch):
    producer = make_producer(kafka)
    start_ns = (time.time_ns() // MS) * MS

    def produce_frame() -> None:
        producer.produce(topics.events, serialise_ev44(
            "DAE", 1, np.array([start_ns], np.int64), np.array([0], np.int32),
            np.arange(7, dtype=np.int32), np.arange(7, dtype=np.int32)),
            timestamp=start_ns // MS)
        producer.flush(10)

    real = filewriter.job.make_consumer
    monkeypatch.setattr(filewriter.job, "make_consumer",
                        lambda *a, **k: FrameDuringSeek(real(*a, **k), produce_frame))
    structure = {"children": [{"type": "group", "name": "events", "children": [
        {"module": "ev44", "config": {"topic": topics.events, "source": "DAE"}}]}]}
    job = WriteJob(StartJob(str(uuid.uuid4()), "seek.nxs", start_ns, start_ns + 50 * MS,
                            structure, topics.run_info, "1", "IT", ""),
                   JobSettings(tmp_path, leeway_s=0.2), kafka)
    job.open()
    result = job.run()
    assert result.error is None
    assert result.events == 7
