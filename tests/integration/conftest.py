from __future__ import annotations

import itertools
import uuid

import pytest

from datastream.kafka_client import KafkaSettings, make_consumer
from datastream.topics import InstrumentTopics, create_topics, wait_for_topics

_counter = itertools.count(1)


@pytest.fixture
def topics(kafka: KafkaSettings) -> InstrumentTopics:
    """A fresh instrument's topics on the session's real broker."""
    t = InstrumentTopics(f"IT{next(_counter)}{uuid.uuid4().hex[:4].upper()}")
    outcome = create_topics(kafka, t)
    wait_for_topics(kafka, list(outcome))
    return t


def read_all(kafka: KafkaSettings, topic: str, expect: int | None = None,
             timeout: float = 15.0) -> list:
    """Every message of a topic from its beginning (until expect are there or timeout)."""
    import time

    from confluent_kafka import TopicPartition

    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
            elif expect is None and msg is None and out:
                break
            if expect is not None and len(out) >= expect:
                break
    finally:
        consumer.close()
    return out
