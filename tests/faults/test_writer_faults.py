"""The file writer killed (SIGKILL) or stopped (SIGTERM) at any point of a job: the restarted
writer takes the job back from its journal and writes it again from Kafka, so the final file
holds every event of the run exactly once; a stop is never reported as a success."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from datastream.kafka_client import make_producer
from tests.conftest import wait_until
from tests.faults.conftest import MS, FrameSource, check_events_file, stop_as_a_dae
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import answers_for, start_run, wait_wrdn

pytestmark = pytest.mark.faults


@pytest.mark.parametrize(("when", "sig"), [
    ("creating", signal.SIGKILL), ("writing", signal.SIGKILL), ("closing", signal.SIGKILL),
    ("writing", signal.SIGTERM)])
def test_writer_killed_or_stopped_mid_job_the_file_is_complete(kafka, topics, tmp_path,
                                                               when, sig):
    producer = make_producer(kafka)
    job_id = str(uuid.uuid4())
    with writer_process(kafka, topics, tmp_path) as writer:
        frames = FrameSource(kafka, topics.events).start()
        time.sleep(0.5)
        start_ms = time.time_ns() // MS
        start_run(producer, topics, start_ms, job_id, "FAULT001.nxs")
        if when == "creating":
            time.sleep(0.05)
        else:
            wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 20, "answ 201")
            time.sleep(1.5)
        if when == "closing":
            stop_ms = stop_as_a_dae(frames, producer, topics.run_info, job_id)
            time.sleep(0.3)  # past the stop, inside the leeway: the job is closing
        writer.send_signal(sig)
        writer.wait(30)
    if sig == signal.SIGTERM:
        # a graceful stop closes the file it has but reports no success for it
        assert not [w for w in _wrdns(kafka, topics, job_id)]
    with writer_process(kafka, topics, tmp_path, wait_ready=False):
        if when != "closing":
            time.sleep(1.0)
            stop_ms = stop_as_a_dae(frames, producer, topics.run_info, job_id)
        done = wait_wrdn(kafka, topics.run_info, job_id, timeout=60)
        assert not done.error_encountered, done.message
    assert frames.failed == 0
    expected = frames.events_between(start_ms * MS, stop_ms * MS)
    assert expected > 0
    check_events_file(tmp_path / "FAULT001.nxs", expected, distinct_ids=True,
                      pulses=frames.pulses_between(start_ms * MS, stop_ms * MS),
                      explain=lambda ids: frames.explain(ids, start_ms * MS, stop_ms * MS))
    assert not (tmp_path / "FAULT001.nxs.partial").exists()
    assert not list((tmp_path / ".filewriter-jobs").rglob("*.pl72"))  # no job left owned


def _wrdns(kafka, topics, job_id):
    from tests.integration.test_filewriter_kafka import replies

    return [w for w in replies(kafka, topics.run_info, "wrdn") if w.job_id == job_id]
