"""The live view's consumer lag on the real broker: the messages of the events topic its
consumer has still to read, from the offsets its own fetches saw."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from datastream.kafka_client import make_consumer, make_producer
from liveview.service import events_behind
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def test_the_lag_is_what_is_left_to_read(kafka, topics):
    topic = topics.events
    producer = make_producer(kafka)
    for i in range(40):
        producer.produce(topic, f"message {i}".encode())
    assert producer.flush(30) == 0
    consumer = make_consumer(kafka)
    try:
        assert events_behind(consumer, topic) == 0  # nothing assigned yet
        consumer.assign([TopicPartition(topic, p, 0)
                         for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions])
        read = []
        # the first fetch tells the consumer where the topic ends
        wait_until(lambda: read.extend(consumer.consume(10, timeout=1.0)) or read, 20,
                   "the first messages")
        assert 0 < len(read) < 40
        wait_until(lambda: events_behind(consumer, topic) == 40 - len(read), 10,
                   f"a lag of {40 - len(read)}")
        while len(read) < 40:
            read.extend(consumer.consume(40, timeout=1.0))
        assert events_behind(consumer, topic) == 0
        assert events_behind(consumer, topics.run_info) == 0  # not assigned
    finally:
        consumer.close()
