"""The forwarder's one Kafka producer: never blocks an EPICS callback, counts every drop."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublisherCounters:
    queued: int
    delivered: int
    dropped_full: int
    delivery_errors: int


class Publisher:
    """Owns its producer and one poll thread (start()/close()). The producer should report
    only failed deliveries (`delivery.report.only.error`): a Python callback per delivered
    message was a tenth of the forwarder's time at 30,000 updates/s. What was delivered is
    what was queued, less the failures and what librdkafka still holds."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._lock = threading.Lock()
        self._queued = 0
        self._dropped = 0
        self._errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, topic: str, key: bytes, payload: bytes, timestamp_ms: int) -> bool:
        try:
            self._producer.produce(topic, payload, key=key, timestamp=timestamp_ms,
                                   on_delivery=self._on_delivery)
        except BufferError:
            # the bounded queue is full (broker away or too slow): drop and count, never block
            with self._lock:
                self._dropped += 1
            return False
        with self._lock:
            self._queued += 1
        return True

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            return
        with self._lock:
            self._errors += 1
        log.warning("forwarded message not delivered: %s", err)

    def counters(self) -> PublisherCounters:
        with self._lock:
            in_flight = len(self._producer)
            return PublisherCounters(self._queued, self._queued - self._errors - in_flight,
                                     self._dropped, self._errors)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="forwarder-producer",
                                        daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("%d forwarded messages undelivered at shutdown", remaining)
