"""A thread that follows one topic from its end and hands every message to a handler."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import TopicPartition

from datastream.kafka_client import KafkaSettings, make_consumer, offsets_since

log = logging.getLogger(__name__)


class TopicListener:
    """Owns one consumer thread (start()/close()). A message on_message cannot take is logged
    and skipped: one bad message never stops it. `ready` is set once the listener's start
    offsets are fixed: anything produced after that is seen. It starts at the topic's end, or
    at `since_ms` (Kafka time) when given."""

    def __init__(self, settings: KafkaSettings, topic: str,
                 on_message: Callable[[bytes], None], since_ms: int | None = None) -> None:
        self._since_ms = since_ms
        self._settings = settings
        self._topic = topic
        self._on_message = on_message
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"listen-{self._topic}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _assign_at_end(self, consumer: object) -> None:
        # explicit end offsets, not OFFSET_END: that is resolved only at the first fetch, and a
        # message produced in between would be missed
        metadata = consumer.list_topics(self._topic, timeout=10).topics.get(self._topic)
        partitions = list(metadata.partitions) if metadata and metadata.partitions else [0]
        if self._since_ms is not None:
            assignment = offsets_since(
                consumer, [TopicPartition(self._topic, p, self._since_ms) for p in partitions])
        else:
            assignment = [TopicPartition(self._topic, p, max(consumer.get_watermark_offsets(
                TopicPartition(self._topic, p), timeout=10)[1], 0)) for p in partitions]
        consumer.assign(assignment)
        self.ready.set()

    def _run(self) -> None:
        consumer = make_consumer(self._settings)
        try:
            failures = 0
            while not self._stop.is_set() and not self.ready.is_set():
                try:
                    self._assign_at_end(consumer)
                except Exception as exc:  # no broker or topic yet: keep trying, never give up
                    failures += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(level, "cannot follow %s yet (retrying every 2 s): %s",
                            self._topic, exc)
                    self._stop.wait(2)
            if failures:
                log.info("following %s", self._topic)
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
                    log.warning("skipped a message on %s at offset %d: %s",
                                self._topic, msg.offset(), exc)
        except Exception:
            log.exception("listener for %s stopped", self._topic)
        finally:
            consumer.close()
