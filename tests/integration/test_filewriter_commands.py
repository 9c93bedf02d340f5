"""Run starts the writer must refuse or must still take: hostile file names, a start sent
before any writer joined the pool, a static file, the older mdat form."""

from __future__ import annotations

import json
import time
import uuid

import h5py
import pytest
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from tests.conftest import wait_until
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import MS, answers_for, start_run, wait_wrdn

pytestmark = pytest.mark.integration

STATIC = {"children": [{"type": "group", "name": "entry",
                        "attributes": {"NX_class": "NXentry"}, "children": [
                            {"module": "dataset", "config": {"name": "title", "values": "cal"}},
                            {"module": "mdat", "config": {"items": ["start_time", "end_time"]}}]}]}


def test_file_names_outside_the_data_dir_get_400_and_no_file(kafka, topics, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "elsewhere").symlink_to(outside)
    producer = make_producer(kafka)
    with writer_process(kafka, topics, data):
        for name in (str(outside / "abs.nxs"), "../climb.nxs", "elsewhere/linked.nxs"):
            job_id = str(uuid.uuid4())
            start_run(producer, topics, time.time_ns() // MS, job_id, name)
            answer = wait_until(lambda j=job_id: answers_for(kafka, topics.run_info, j), 20,
                                f"answ for {name}")[0]
            assert answer.status_code == 400 and "refused" in answer.message, answer.message
        assert not list(outside.iterdir()) and not (tmp_path / "climb.nxs").exists()
        # a subfolder of the data dir is fine; the writer took that job after the refusals
        (data / "cycle_26_4").mkdir()
        job_id = str(uuid.uuid4())
        start_run(producer, topics, time.time_ns() // MS, job_id, "cycle_26_4/OK.nxs",
                  stop_ms=time.time_ns() // MS)
        assert not wait_wrdn(kafka, topics.run_info, job_id).error_encountered
        assert (data / "cycle_26_4" / "OK.nxs").exists()


def test_a_run_started_before_any_writer_joined_is_written(kafka, topics, tmp_path):
    """A new pool starts a little back, not at the newest offset: `up` then BEGINRUN at once."""
    producer = make_producer(kafka)
    job_id = str(uuid.uuid4())
    start_ms = time.time_ns() // MS
    start_run(producer, topics, start_ms, job_id, "EARLY.nxs", stop_ms=start_ms + 100)
    with writer_process(kafka, topics, tmp_path, wait_ready=False):
        done = wait_wrdn(kafka, topics.run_info, job_id, timeout=60)
    assert not done.error_encountered, done.message
    assert [a.status_code for a in answers_for(kafka, topics.run_info, job_id)] == [201]


def test_a_static_file_with_no_stream_is_written_at_its_stop(kafka, topics, tmp_path):
    producer = make_producer(kafka)
    with writer_process(kafka, topics, tmp_path):
        job_id = str(uuid.uuid4())
        deliver(producer, topics.run_info, serialise_pl72(
            job_id, "STATIC.nxs", start_time=time.time_ns() // MS,
            nexus_structure=json.dumps(STATIC), control_topic=topics.run_info))
        wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 20, "answ 201")
        deliver(producer, topics.run_info, serialise_6s4t(
            job_id, command_id=str(uuid.uuid4()), stop_time=time.time_ns() // MS))
        done = wait_wrdn(kafka, topics.run_info, job_id)
    assert not done.error_encountered, done.message
    with h5py.File(tmp_path / "STATIC.nxs", "r") as f:
        assert f["entry/title"][()] == b"cal"
        assert f["entry/start_time"][()] and f["entry/end_time"][()]
