"""The live view's just-bin-it interface on the real broker, driven as NICOS drives
just-bin-it: JSON commands on the command topic, ACK/ERR answers by msg_id, an x5f2
heartbeat, and hs00/hs01 histograms whose counts are exactly the events sent."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.histogram_hs00 import deserialise_hs00
from streaming_data_types.histogram_hs01 import deserialise_hs01
from streaming_data_types.status_x5f2 import deserialise_x5f2

from datastream.kafka_client import deliver, make_producer
from datastream.schemas import schema_id
from liveview.jbi_service import JbiService, JbiTopics
from tests.conftest import wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

MS = 1_000_000


@pytest.fixture
def jbi(kafka, topics):
    service = JbiService(kafka, JbiTopics(topics.name("liveCommands"),
                                          topics.name("liveResponses"),
                                          topics.name("liveStatus")), "test")
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    # the heartbeat comes once the command topic is assigned: commands sent now are read
    wait_until(lambda: read_all(kafka, topics.name("liveStatus"), timeout=2), 20,
               "the first x5f2 heartbeat")
    yield service
    stop.set()
    thread.join(15)
    assert not thread.is_alive()


def answers(kafka, topics) -> dict[str, dict]:
    return {a["msg_id"]: a for a in (json.loads(m.value()) for m in
                                     read_all(kafka, topics.name("liveResponses"), timeout=2))}


def histograms(kafka, topics, hist_id: str) -> list[tuple[dict, dict]]:
    """(hs message, its info) of one histogram id, oldest first, hs00 or hs01."""
    out = []
    for m in read_all(kafka, topics.name("liveHistograms"), timeout=2):
        hist = (deserialise_hs01 if schema_id(m.value()) == "hs01" else deserialise_hs00)(
            m.value())
        info = json.loads(hist["info"])
        if info["id"] == hist_id:
            out.append((hist, info))
    return out


def last_info(kafka, topics, hist_id: str, state: str | None = None):
    found = histograms(kafka, topics, hist_id)
    if not found or (state is not None and found[-1][1]["state"] != state):
        return None
    return found[-1]


def command(kafka, topics, **fields) -> None:
    deliver(make_producer(kafka), topics.name("liveCommands"), json.dumps(fields).encode())


def test_nicos_configures_histograms_of_a_past_interval(kafka, topics, jbi):
    producer = make_producer(kafka)
    t0 = (time.time_ns() // MS - 60_000) * MS  # a minute ago: historic data, read back
    for k in range(12):  # 100 ms apart; frames 10 and 11 are after the stop asked below
        ids = (np.arange(100) + k) % 64 + 1
        tofs = np.arange(100) * 10 + 5
        producer.produce(topics.events, serialise_ev44(
            "det", k, np.array([t0 + k * 100 * MS]), np.array([0]), tofs, ids),
            timestamp=(t0 + k * 100 * MS) // MS)
    producer.produce(topics.events, b"garbage, not a flatbuffer")
    assert producer.flush(10) == 0
    start_ms, stop_ms = t0 // MS, t0 // MS + 1000
    hist_topic = topics.name("liveHistograms")
    command(kafka, topics, cmd="config", msg_id="past", data_brokers=[kafka.bootstrap],
            data_topics=[topics.events], start=start_ms, stop=stop_ms, histograms=[
                {"type": "hist1d", "tof_range": [0, 1000], "num_bins": 10,
                 "topic": hist_topic, "id": "tof"},
                {"type": "dethist", "det_range": [1, 64], "width": 8, "height": 8,
                 "topic": hist_topic, "id": "image"}])
    wait_until(lambda: "past" in answers(kafka, topics), 20, "the config's answer")
    assert answers(kafka, topics)["past"] == {"msg_id": "past", "response": "ACK"}
    hist, info = wait_until(lambda: last_info(kafka, topics, "tof", "FINISHED"), 30,
                            "the final 1-D histogram")
    assert info["sum"] == 1000 and info["start"] == start_ms and info["stop"] == stop_ms
    assert hist["source"] == "just-bin-it" and hist["data"].shape == (10,)
    np.testing.assert_array_equal(hist["data"], np.full(10, 100))
    image, info = wait_until(lambda: last_info(kafka, topics, "image", "FINISHED"), 10,
                             "the final detector image")
    assert image["data"].shape == (8, 8) and info["sum"] == 1000
    expected = np.zeros((8, 8))
    for k in range(10):
        ids = (np.arange(100) + k) % 64  # id - 1
        np.add.at(expected, (ids % 8, ids // 8), 1)
    np.testing.assert_array_equal(image["data"], expected)

    # bad commands: each answered ERR with its reason; nothing else changes
    command(kafka, topics, cmd="config", msg_id="bad-type", data_topics=[topics.events],
            histograms=[{"type": "hist3d", "topic": hist_topic}])
    command(kafka, topics, cmd="config", msg_id="no-topic", data_topics=["NO_SUCH_events"],
            interval=5, histograms=[{"type": "hist1d", "tof_range": [0, 10], "num_bins": 1,
                                     "topic": hist_topic}])
    command(kafka, topics, cmd="launch", msg_id="unknown")
    deliver(producer, topics.name("liveCommands"), b"{ not json")  # no msg_id: logged only
    wait_until(lambda: {"bad-type", "no-topic", "unknown"} <= set(answers(kafka, topics)), 20,
               "answers to the bad commands")
    got = answers(kafka, topics)
    assert got["bad-type"]["response"] == "ERR" and "hist3d" in got["bad-type"]["message"]
    assert "NO_SUCH_events not found" in got["no-topic"]["message"]
    assert "unknown command type 'launch'" in got["unknown"]["message"]
    assert jbi.session is not None and jbi.session.events == 1000  # still the good config


def test_live_counting_reset_and_stop_in_hs01_from_ev42(kafka, topics, jbi):
    hist_topic = topics.name("liveHistograms")
    command(kafka, topics, cmd="config", msg_id="live", data_topics=[topics.events],
            input_schema="ev42", output_schema="hs01", histograms=[
                {"type": "hist2d", "tof_range": [0, 100], "det_range": [0, 10],
                 "num_bins": [5, 2], "topic": hist_topic, "id": "live", "source": "mon"}])
    wait_until(lambda: "live" in answers(kafka, topics), 20, "the config's answer")
    producer = make_producer(kafka)

    def send(n: int) -> None:
        for _ in range(n):
            now = time.time_ns()
            producer.produce(topics.events, serialise_ev42("mon", 1, now, np.array([10, 90]),
                                                           np.array([1, 9])))
            producer.produce(topics.events, serialise_ev42("other", 1, now, np.array([10]),
                                                           np.array([1])))  # another source
        assert producer.flush(10) == 0

    send(5)
    hist, info = wait_until(lambda: (lambda f: f if f and f[1]["sum"] == 10 else None)(
        last_info(kafka, topics, "live")), 20, "the live 2-D histogram to count 10")
    assert info["state"] == "COUNTING" and "stop" not in info
    assert hist["data"].shape == (5, 2)
    np.testing.assert_array_equal(hist["data"], [[5, 0], [0, 0], [0, 0], [0, 0], [0, 5]])
    command(kafka, topics, cmd="reset_counts", msg_id="reset")
    wait_until(lambda: (lambda f: f and f[1]["sum"] == 0)(last_info(kafka, topics, "live")),
               20, "the counts reset")
    send(2)
    command(kafka, topics, cmd="stop", msg_id="stop")
    hist, info = wait_until(lambda: last_info(kafka, topics, "live", "FINISHED"), 20,
                            "the final histogram after stop")
    assert info["sum"] == 4
    assert {answers(kafka, topics)[m]["response"] for m in ("reset", "stop")} == {"ACK"}

    def last_beat():
        beats = [deserialise_x5f2(m.value()) for m in read_all(kafka, topics.name("liveStatus"),
                                                              timeout=2)]
        return beats[-1] if json.loads(beats[-1].status_json)["state"] == "FINISHED" else None

    beat = wait_until(last_beat, 10, "a heartbeat saying FINISHED")
    assert beat.software_name == "datastream-liveview" and beat.update_interval == 2000
