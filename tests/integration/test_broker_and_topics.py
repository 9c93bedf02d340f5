import pytest
from confluent_kafka import TopicPartition

from datastream.kafka_client import DeliveryError, deliver, make_consumer, make_producer
from datastream.topics import InstrumentTopics
from launcher.topic_ensure import ensure_topics
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration


def test_a_second_ensure_changes_nothing(kafka, topics):
    again = ensure_topics(kafka, topics)
    assert not again.changes and not again.refusals
    assert set(again.unchanged) == set(topics.all())


def test_the_broker_does_not_auto_create_topics(kafka):
    producer = make_producer(kafka, message_timeout_ms=3000)
    with pytest.raises(DeliveryError):
        deliver(producer, "NOSUCH_topic_xyz", b"x", timeout=5)
    assert "NOSUCH_topic_xyz" not in make_consumer(kafka).list_topics(timeout=5).topics


def test_delivery_timestamps_and_large_messages(kafka, topics):
    """The contract the fakes assume: deliver() waits for the broker; the producer's timestamp
    is the message's; messages of several MB (big ev44 frames) pass."""
    producer = make_producer(kafka)
    big = b"\x01" * (6 * 1024 * 1024)
    deliver(producer, topics.events, big, key=b"k", timestamp_ms=1_700_000_000_123)
    [msg] = read_all(kafka, topics.events, expect=1)
    assert msg.timestamp()[1] == 1_700_000_000_123 and len(msg.value()) == len(big)
    consumer = make_consumer(kafka)
    [found] = consumer.offsets_for_times([TopicPartition(topics.events, 0, 1_700_000_000_000)])
    assert found.offset == 0


def test_instrument_topic_names():
    t = InstrumentTopics("LOQ")
    assert (t.run_info, t.events, t.sample_env) == ("LOQ_runInfo", "LOQ_events", "LOQ_sampleEnv")
