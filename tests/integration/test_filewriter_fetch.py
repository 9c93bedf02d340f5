"""The job consumer fetches in bounded pieces; a message larger than a fetch or than the
queue cap must still arrive whole, between its neighbours."""

from __future__ import annotations

import time
import uuid

import h5py
import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.kafka_client import make_producer
from filewriter.commands import StartJob
from filewriter.job import FETCH_BYTES, JobSettings, WriteJob

pytestmark = pytest.mark.integration
MS = 1_000_000

def test_a_message_larger_than_a_fetch_is_written(kafka, topics, tmp_path):
    big = FETCH_BYTES // 8 + 100_000  # events: 8 bytes each
    producer = make_producer(kafka)
    start_ns = (time.time_ns() // MS) * MS
    for k, n in enumerate((10, big, 10)):
        t = start_ns + k * 100 * MS
        producer.produce(topics.events, serialise_ev44(
            "DAE", k, np.array([t], np.int64), np.array([0], np.int32),
            np.full(n, k, np.int32), np.full(n, k, np.int32)), timestamp=t // MS)
    producer.flush(30)
    structure = {"children": [{"type": "group", "name": "events", "children": [
        {"module": "ev44", "config": {"topic": topics.events, "source": "DAE"}}]}]}
    job = WriteJob(StartJob(str(uuid.uuid4()), "big.nxs", start_ns, start_ns + 300 * MS,
                            structure, topics.run_info, "1", "IT", ""),
                   JobSettings(tmp_path, leeway_s=0.2, max_queued_mb=1), kafka)
    job.open()
    result = job.run()
    assert result.error is None
    assert result.events == big + 20
    with h5py.File(tmp_path / "big.nxs", "r") as f:
        ids = f["events/event_id"][()]
        assert list(f["events/event_index"][()]) == [0, 10, 10 + big]
    assert np.array_equal(np.bincount(ids), [10, big, 10])
