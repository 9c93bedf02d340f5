"""The real writer process against hostile input: a run start it cannot open is answered and
forgotten (the process stays, and a restart does not meet it again), bad data messages are
skipped with the run's file whole, and names reaching the services' folders are refused."""

from __future__ import annotations

import json
import socket
import time
import uuid

import h5py
import numpy as np
import pytest
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.logdata_f144 import serialise_f144
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from filewriter.journal import JobJournal
from tests.conftest import wait_until
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import (
    MS,
    answers_for,
    frame,
    start_run,
    wait_wrdn,
)

pytestmark = pytest.mark.integration

POISON = {"children": [{"type": "group", "name": "entry", "children": [
    {"type": "group", "name": "t", "children": [{"module": "f144", "config": [1]}]}]}]}


def _answer(kafka, topics, job_id):
    return wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 30,
                      f"answ for {job_id}")[0]


def test_a_run_start_that_cannot_be_opened_never_stops_the_writer(kafka, topics, tmp_path):
    producer = make_producer(kafka)
    # a record of the poison job, as a writer that died on it before this fix left it
    left = str(uuid.uuid4())
    instance = f"fw-{topics.instrument}-{socket.gethostname()}"  # the writer's default
    JobJournal(tmp_path / ".filewriter-jobs" / instance).add(left, serialise_pl72(
        left, "LEFT.nxs", start_time=time.time_ns() // MS, nexus_structure=json.dumps(POISON),
        control_topic=topics.run_info))
    with writer_process(kafka, topics, tmp_path, wait_ready=False) as writer:
        answer = _answer(kafka, topics, left)
        assert answer.status_code == 500 and "nexus_structure" in answer.message
        poison = str(uuid.uuid4())
        deliver(producer, topics.run_info, serialise_pl72(
            poison, "POISON.nxs", start_time=time.time_ns() // MS,
            nexus_structure=json.dumps(POISON), control_topic=topics.run_info))
        answer = _answer(kafka, topics, poison)
        assert answer.status_code == 500 and "nexus_structure" in answer.message
        too_long = str(uuid.uuid4())
        start_run(producer, topics, time.time_ns() // MS, too_long, "X" * 300 + ".nxs")
        assert _answer(kafka, topics, too_long).status_code == 400
        assert writer.poll() is None
        good = str(uuid.uuid4())
        start_run(producer, topics, time.time_ns() // MS, good, "GOOD.nxs",
                  stop_ms=time.time_ns() // MS)
        assert not wait_wrdn(kafka, topics.run_info, good).error_encountered
    assert not (tmp_path / "POISON.nxs").exists() and not (tmp_path / "LEFT.nxs").exists()
    assert not list((tmp_path / ".filewriter-jobs").rglob("*.pl72"))
    # started again, the writer meets none of them again
    with writer_process(kafka, topics, tmp_path) as writer:
        time.sleep(2)
        assert writer.poll() is None
    for job_id in (left, poison):
        assert len(answers_for(kafka, topics.run_info, job_id)) == 1


def test_bad_data_messages_are_skipped_and_the_file_is_whole(kafka, topics, tmp_path):
    producer = make_producer(kafka)
    now_ms = time.time_ns() // MS
    start_ms, stop_ms = now_ms - 3000, now_ms - 1000
    start_ns = start_ms * MS
    good = [start_ns + k * 100 * MS for k in range(15)]
    for i, t in enumerate(good):
        producer.produce(topics.events, frame(t, 4, 4 * i), timestamp=t // MS)
    bad = [(topics.events, serialise_ev42("DAE", 7, 2**64 - 1, np.arange(3), np.arange(3))),
           (topics.sample_env, serialise_f144("TE:IT:TEMP", 5.0, -1)),
           (topics.sample_env, serialise_al00("TE:IT:TEMP", -5, Severity.MAJOR, "LOLO")),
           (topics.sample_env, serialise_ep01(-5, ConnectionInfo.CONNECTED, "TE:IT:TEMP"))]
    for topic, payload in bad:
        producer.produce(topic, payload, timestamp=start_ms + 50)
    producer.flush(10)
    with writer_process(kafka, topics, tmp_path):
        job_id = str(uuid.uuid4())
        start_run(producer, topics, start_ms, job_id, "IT00000021.nxs")
        deliver(producer, topics.run_info, serialise_6s4t(
            job_id, command_id=str(uuid.uuid4()), stop_time=stop_ms))
        done = wait_wrdn(kafka, topics.run_info, job_id)
    assert not done.error_encountered, done.message
    assert json.loads(done.metadata)["malformed"] == len(bad), done.metadata
    with h5py.File(tmp_path / "IT00000021.nxs", "r") as f:  # a plain reader: closed whole
        events = f["raw_data_1/detector_1_events"]
        assert events["event_time_zero"][:].tolist() == [t for t in good if t < stop_ms * MS]
        assert len(events["event_id"]) == 4 * len(events["event_time_zero"])
        assert f["raw_data_1/end_time"][()]


def test_names_in_the_service_folders_or_with_control_characters_get_400(kafka, topics,
                                                                        tmp_path):
    producer = make_producer(kafka)
    with writer_process(kafka, topics, tmp_path):
        for name in ("runinfo/IT_runnumber.txt", ".filewriter-jobs/x/y.pl72",
                     "RUN\x1b[31m.nxs", "RUN\u202egnp.nxs"):
            job_id = str(uuid.uuid4())
            start_run(producer, topics, time.time_ns() // MS, job_id, name)
            answer = _answer(kafka, topics, job_id)
            assert answer.status_code == 400 and "refused" in answer.message, answer.message
    assert not (tmp_path / "runinfo").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {".filewriter-jobs", "writer.log"}
