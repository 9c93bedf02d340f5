"""The file writer against a real broker: commands, answers, timing, bad input."""

from __future__ import annotations

import json
import time
import uuid

import h5py
import numpy as np
import pytest
import scippnexus as snx
from streaming_data_types.action_response_answ import deserialise_answ
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from datastream.schemas import schema_id
from datastream.schemas.f142 import serialise_f142
from datastream.streams import LogStream, Stream
from ioc.nexus_template import RunMetadata, nexus_structure
from tests.conftest import wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration
MS = 1_000_000


def replies(kafka, topic, sid):
    decode = {"answ": deserialise_answ, "wrdn": deserialise_wrdn}[sid]
    return [decode(m.value()) for m in read_all(kafka, topic, timeout=1)
            if schema_id(m.value()) == sid]


def wait_wrdn(kafka, topic, job_id, timeout=30):
    return wait_until(lambda: [w for w in replies(kafka, topic, "wrdn") if w.job_id == job_id],
                      timeout, f"wrdn for {job_id}")[0]


def frame(t_ns, n, first_id=0):
    ids = np.arange(first_id, first_id + n, dtype=np.int32)
    return serialise_ev44("DAE", 1, np.array([t_ns], np.int64), np.array([0], np.int32),
                          ids % 1000, ids)


def start_run(producer, topics, start_ms, job_id, filename, stop_ms=None):
    logs = [LogStream(Stream("TE:IT:TEMP", "ca", "f142", topics.sample_env), "Temperature", "K")]
    structure = nexus_structure(RunMetadata(topics.instrument, 1, "a title", ("Ada",), "RB1"),
                                topics.events, "DAE", logs, log_layout="kafka-to-nexus")
    deliver(producer, topics.run_info, serialise_pl72(
        job_id, filename, start_time=start_ms, stop_time=stop_ms,
        nexus_structure=json.dumps(structure), control_topic=topics.run_info,
        run_name="00000001", instrument_name=topics.instrument))


def test_every_frame_in_the_run_once_with_logs_and_garbage_skipped(kafka, topics, writer):
    producer = make_producer(kafka)
    now_ms = time.time_ns() // MS
    start_ms, stop_ms = now_ms - 4000, now_ms - 1000
    start_ns, stop_ns = start_ms * MS, stop_ms * MS
    frame_times = [start_ns + k * 100 * MS for k in range(-20, 40)]  # before, in and after
    for i, t in enumerate(frame_times):
        producer.produce(topics.events, frame(t, 5, 5 * i), timestamp=t // MS)
        if i % 7 == 0:  # garbage on every data topic
            producer.produce(topics.events, b"not a flatbuffer at all", timestamp=t // MS)
    producer.produce(topics.events, b"", timestamp=start_ms + 1)
    temps = [(start_ns - 3000 * MS, 10.0), (start_ns - 2000 * MS, 11.0),
             (start_ns + 500 * MS, 12.0), (start_ns + 500 * MS, 12.0),
             (stop_ns + 200 * MS, 13.0)]
    for t, v in temps:
        producer.produce(topics.sample_env, serialise_f142(v, "TE:IT:TEMP", t), key=b"TE:IT:TEMP",
                         timestamp=t // MS)
    producer.produce(topics.sample_env, b"\x00\x00\x00\x00f142\xff\xff", timestamp=start_ms)
    producer.produce(topics.run_info, b"junk on the command topic")
    producer.flush(10)

    job_id = str(uuid.uuid4())
    start_run(producer, topics, start_ms, job_id, "IT00000001.nxs")
    deliver(producer, topics.run_info, serialise_6s4t(job_id, command_id=str(uuid.uuid4()),
                                                      stop_time=stop_ms))
    done = wait_wrdn(kafka, topics.run_info, job_id)
    assert not done.error_encountered, done.message
    expected = [t for t in frame_times if start_ns <= t < stop_ns]
    with h5py.File(writer / "IT00000001.nxs") as f:
        events = f["raw_data_1/detector_1_events"]
        assert events["event_time_zero"][:].tolist() == expected
        assert len(events["event_id"]) == 5 * len(expected)
        ids = events["event_id"][:]
        assert len(np.unique(ids)) == len(ids)  # none twice
        temp = f["raw_data_1/selog/Temperature"]
        assert temp["value"][:].tolist() == [11.0, 12.0]  # start value, then the change once
        assert temp["time"][:].tolist() == [start_ns - 2000 * MS, start_ns + 500 * MS]
        assert temp["value"].attrs["units"] == "K"
        assert f["raw_data_1/title"][()] == b"a title"
    assert "malformed" in done.message
    with snx.File(writer / "IT00000001.nxs") as f:
        assert f["raw_data_1"]["detector_1_events"][...].bins.size().sum().value == len(ids)
        assert f["raw_data_1"]["selog"]["Temperature"][...]["value"].sizes == {"time": 2}
        assert f["raw_data_1"]["selog"]["Temperature"]["minimum_value"][()].value == 11.0
    answers = replies(kafka, topics.run_info, "answ")
    assert [a.status_code for a in answers if a.job_id == job_id] == [201, 201]


def test_existing_file_is_refused_with_500(kafka, topics, writer):
    producer = make_producer(kafka)
    (writer / "IT00000009.nxs").write_bytes(b"precious")
    job_id = str(uuid.uuid4())
    start_run(producer, topics, time.time_ns() // MS, job_id, "IT00000009.nxs")
    answer = wait_until(lambda: [a for a in replies(kafka, topics.run_info, "answ")
                                 if a.job_id == job_id], 20, "answ")[0]
    assert answer.status_code == 500 and "already exists" in answer.message
    assert (writer / "IT00000009.nxs").read_bytes() == b"precious"
    # the writer is still there for the next job
    job2 = str(uuid.uuid4())
    start_run(producer, topics, time.time_ns() // MS, job2, "IT00000010.nxs",
              stop_ms=time.time_ns() // MS)
    assert not wait_wrdn(kafka, topics.run_info, job2).error_encountered


def test_bad_command_gets_400(kafka, topics, writer):
    producer = make_producer(kafka)
    deliver(producer, topics.run_info, serialise_pl72("not-a-uuid", "x.nxs",
                                                      nexus_structure="{}"))
    answer = wait_until(lambda: replies(kafka, topics.run_info, "answ"), 20, "answ")[0]
    assert answer.status_code == 400 and "UUID" in answer.message


def test_missing_data_topic_ends_the_job_with_an_error(kafka, topics, writer):
    producer = make_producer(kafka)
    job_id = str(uuid.uuid4())
    structure = {"children": [{"type": "group", "name": "entry", "children": [
        {"type": "group", "name": "events", "children": [
            {"module": "ev44", "config": {"topic": "NO_SUCH_topic", "source": "DAE"}}]}]}]}
    deliver(producer, topics.run_info, serialise_pl72(
        job_id, "IT00000011.nxs", nexus_structure=json.dumps(structure),
        control_topic=topics.run_info))
    done = wait_wrdn(kafka, topics.run_info, job_id)
    assert done.error_encountered and "NO_SUCH_topic" in done.message


def answers_for(kafka, topic, job_id):
    return [a for a in replies(kafka, topic, "answ") if a.job_id == job_id]


def test_stop_for_an_unknown_job_and_a_second_start_get_400(kafka, topics, writer):
    producer = make_producer(kafka)
    unknown = str(uuid.uuid4())
    deliver(producer, topics.run_info, serialise_6s4t(unknown, command_id=str(uuid.uuid4()),
                                                      stop_time=time.time_ns() // MS))
    answer = wait_until(lambda: answers_for(kafka, topics.run_info, unknown), 20, "answ")[0]
    assert answer.status_code == 400 and "unknown job" in answer.message
    deliver(producer, topics.run_info, serialise_6s4t("not-a-uuid", command_id="x"))
    answer = wait_until(lambda: answers_for(kafka, topics.run_info, "not-a-uuid"), 20,
                        "answ")[0]
    assert answer.status_code == 400 and "UUID" in answer.message

    job_id = str(uuid.uuid4())
    start_run(producer, topics, time.time_ns() // MS, job_id, "IT00000012.nxs")
    wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 20, "answ 201")
    start_run(producer, topics, time.time_ns() // MS, job_id, "IT00000013.nxs")  # again
    wait_until(lambda: len(answers_for(kafka, topics.run_info, job_id)) == 2, 20, "answ 400")
    assert [a.status_code for a in answers_for(kafka, topics.run_info, job_id)] == [201, 400]
    assert "already running" in answers_for(kafka, topics.run_info, job_id)[1].message
    queued = str(uuid.uuid4())  # sent while the writer is busy: taken once it is free
    start_run(producer, topics, time.time_ns() // MS, queued, "IT00000014.nxs",
              stop_ms=time.time_ns() // MS)
    deliver(producer, topics.run_info, serialise_6s4t(job_id, command_id=str(uuid.uuid4())))
    assert not wait_wrdn(kafka, topics.run_info, job_id).error_encountered
    assert not wait_wrdn(kafka, topics.run_info, queued).error_encountered
    assert not (writer / "IT00000013.nxs").exists()
    # the stop of the finished job is not answered again when the writer rejoins the pool
    time.sleep(1.5)
    assert [a.status_code for a in answers_for(kafka, topics.run_info, job_id)] == [201, 400, 201]
