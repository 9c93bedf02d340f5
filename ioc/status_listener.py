"""A thread that follows one topic from its end and hands every message to a status object."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_END, TopicPartition

from datastream.kafka_client import KafkaSettings, make_consumer

log = logging.getLogger(__name__)


class StatusListener:
    """Owns one consumer thread (start()/close()). A message on_message cannot take is logged
    and skipped: one bad message never stops it."""

    def __init__(self, settings: KafkaSettings, topic: str,
                 on_message: Callable[[bytes], None]) -> None:
        self._settings = settings
        self._topic = topic
        self._on_message = on_message
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"status-{self._topic}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        consumer = make_consumer(self._settings)
        try:
            metadata = consumer.list_topics(self._topic, timeout=10).topics.get(self._topic)
            partitions = list(metadata.partitions) if metadata and metadata.partitions else [0]
            consumer.assign([TopicPartition(self._topic, p, OFFSET_END) for p in partitions])
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    log.warning("%s: %s", self._topic, msg.error())
                    continue
                try:
                    self._on_message(msg.value() or b"")
                except Exception as exc:
                    log.warning("skipped a malformed message on %s at offset %d: %s",
                                self._topic, msg.offset(), exc)
        except Exception:
            log.exception("status listener for %s stopped", self._topic)
        finally:
            consumer.close()
