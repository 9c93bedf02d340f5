"""The storage topic: after each change the whole configuration as one fc00 REPLACE, so a
restarted forwarder reads the last message and resumes exactly what it forwarded."""

from __future__ import annotations

import logging

from confluent_kafka import TopicPartition

from datastream.kafka_client import KafkaSettings, deliver, make_consumer, make_producer
from datastream.streams import Stream
from forwarder.config_update import apply_command, decode_command, encode_configuration

log = logging.getLogger(__name__)
STORAGE_KEY = b"configuration"


def read_stored(settings: KafkaSettings, topic: str, timeout_s: float = 10.0,
                ) -> dict[Stream, bool] | None:
    """The configuration in the newest message of the storage topic; None if there is none
    or it cannot be read (then the forwarder starts from its config file alone)."""
    consumer = make_consumer(settings)
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, high - 1)])
        msg = consumer.poll(timeout_s)
        if msg is None or msg.error():
            log.warning("storage topic %s: no readable last message (%s)", topic,
                        msg.error() if msg else "timed out")
            return None
        # written as a REPLACE; an ADD or REMOVEALL left by another tool applies alike
        return apply_command({}, decode_command(msg.value() or b""))
    except Exception as exc:
        log.warning("storage topic %s not used: %s", topic, exc)
        return None
    finally:
        consumer.close()


class Storage:
    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._topic = topic
        self._producer = make_producer(settings)

    def save(self, streams: dict[Stream, bool]) -> None:
        try:
            # keyed: the storage topic is compacted down to the newest configuration
            deliver(self._producer, self._topic, encode_configuration(streams),
                    key=STORAGE_KEY, timeout=10)
        except Exception as exc:  # forwarding goes on; only a restart would miss the change
            log.error("configuration not saved to %s: %s", self._topic, exc)
