"""ABORTRUN at ISIS discards the run: the writer deletes the file of a job stopped by a 6s4t
whose command_id starts with "abort:", also when it reads that stop only after a restart, and
the next run start may take the same file name (the run number is used again)."""

from __future__ import annotations

import json
import signal
import time
import uuid

import h5py
import numpy as np
import pytest
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from filewriter.commands import ABORT_PREFIX
from tests.conftest import wait_until
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import MS, answers_for, frame, start_run, wait_wrdn

pytestmark = pytest.mark.integration

NAME = "IT00000005.nxs"


def _frames(producer, topic, start_ms, count, first_id):
    """`count` frames of 5 events, 100 ms apart from start_ms; their event ids."""
    for k in range(count):
        t_ns = (start_ms + 100 * k) * MS
        producer.produce(topic, frame(t_ns, 5, first_id + 5 * k), timestamp=t_ns // MS)
    producer.flush(10)
    return list(range(first_id, first_id + 5 * count))


def _abort(producer, topics, job_id, stop_ms):
    deliver(producer, topics.run_info, serialise_6s4t(
        job_id, run_name="00000005", command_id=f"{ABORT_PREFIX}{uuid.uuid4()}",
        stop_time=stop_ms))


def _assert_discarded(kafka, topics, data, job_id, timeout=30):
    done = wait_wrdn(kafka, topics.run_info, job_id, timeout=timeout)
    assert not done.error_encountered, done.message
    assert "aborted" in done.message and NAME in done.message, done.message
    assert done.file_name == ""  # no file: nothing for FILEWRITER:LASTFILE to name
    assert json.loads(done.metadata)["aborted"] is True
    assert not (data / NAME).exists()
    assert not (data / f"{NAME}.partial").exists()
    assert not list((data / ".filewriter-jobs").rglob("*.pl72"))  # the job is forgotten


def test_an_aborted_run_leaves_no_file_and_its_name_is_free_again(kafka, topics, tmp_path):
    producer = make_producer(kafka)
    now_ms = time.time_ns() // MS
    start1, stop1 = now_ms - 4000, now_ms - 2500
    start2, stop2 = now_ms - 2000, now_ms
    _frames(producer, topics.events, start1, 10, 0)
    second_ids = _frames(producer, topics.events, start2, 8, 10_000)
    with writer_process(kafka, topics, tmp_path):
        job1 = str(uuid.uuid4())
        start_run(producer, topics, start1, job1, NAME)
        wait_until(lambda: answers_for(kafka, topics.run_info, job1), 20, "answ 201")
        assert (tmp_path / NAME).exists()
        _abort(producer, topics, job1, stop1)
        _assert_discarded(kafka, topics, tmp_path, job1)
        answers = answers_for(kafka, topics.run_info, job1)
        assert [a.status_code for a in answers] == [201, 201]
        assert "aborted" in answers[1].message

        # an abort for a job no writer has: refused as any stop for an unknown job
        stray = str(uuid.uuid4())
        _abort(producer, topics, stray, stop1)
        answer = wait_until(lambda: answers_for(kafka, topics.run_info, stray), 20,
                            "answ for the stray abort")[0]
        assert answer.status_code == 400 and "unknown job" in answer.message

        # the next BEGIN reuses the run number: same file name, a normal end
        job2 = str(uuid.uuid4())
        start_run(producer, topics, start2, job2, NAME)
        deliver(producer, topics.run_info, serialise_6s4t(
            job2, run_name="00000005", command_id=str(uuid.uuid4()), stop_time=stop2))
        done = wait_wrdn(kafka, topics.run_info, job2)
        assert not done.error_encountered, done.message
        assert done.file_name == NAME
    with h5py.File(tmp_path / NAME, "r") as f:
        ids = f["raw_data_1/detector_1_events/event_id"][:]
    assert np.sort(ids).tolist() == second_ids  # the second run's events, each once
    assert not (tmp_path / f"{NAME}.partial").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_abort_read_after_a_writer_restart_leaves_no_file(kafka, topics, tmp_path, sig):
    producer = make_producer(kafka)
    start_ms = time.time_ns() // MS - 1000
    _frames(producer, topics.events, start_ms, 10, 0)
    job_id = str(uuid.uuid4())
    with writer_process(kafka, topics, tmp_path) as writer:
        start_run(producer, topics, start_ms, job_id, NAME)
        wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 20, "answ 201")
        time.sleep(1.0)  # writing
        writer.send_signal(sig)
        writer.wait(30)
    # the writer left its file and still owns the job
    assert (tmp_path / NAME).exists()
    assert list((tmp_path / ".filewriter-jobs").rglob("*.pl72"))
    _abort(producer, topics, job_id, time.time_ns() // MS)
    with writer_process(kafka, topics, tmp_path, wait_ready=False):
        _assert_discarded(kafka, topics, tmp_path, job_id, timeout=60)
