"""A Kafka consumer made and connected ahead of time, for the next job to take.

A fresh consumer's first request waits for its connection to be set up: on the embedded
broker 55-60 ms (the ApiVersions exchange), on a production cluster the TLS handshake and
SASL round trips besides. A job needs two at its start (its control topic's and its data
topics'), so every run's file waited 0.12 s for them between the run start and its first
event. Made here in a thread of their own while the writer is idle or writing, they are
ready when a run starts; each job still has consumers of its own, never one another job
used. Nothing here is ever required: with none ready (the broker was away, or two runs
started in quick succession), the job makes its own as before."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer

log = logging.getLogger(__name__)

# how long the thread waits for the broker's metadata before it gives the consumer up
WARM_TIMEOUT_S = 10.0


class WarmConsumer:
    """take() a consumer from `make`, connected beforehand when one is ready; the next is
    made at once in the background."""

    def __init__(self, make: Callable[[], Consumer], name: str) -> None:
        self._make = make
        self._name = name
        self._lock = threading.Lock()
        self._ready: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def refill(self) -> None:
        """Start making the next consumer, unless one is ready or being made."""
        with self._lock:
            busy = self._thread is not None and self._thread.is_alive()
            if self._closed or busy or self._ready is not None:
                return
            self._thread = threading.Thread(target=self._warm, name=f"warm-{self._name}",
                                            daemon=True)
            self._thread.start()

    def _warm(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = self._make()
            consumer.list_topics(timeout=WARM_TIMEOUT_S)  # connected, metadata known
        except Exception as exc:  # the job makes its own; this one is not wanted
            log.debug("no %s consumer made ahead: %s", self._name, exc)
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()
            return
        with self._lock:
            if not self._closed:
                self._ready, consumer = consumer, None
        if consumer is not None:  # closed meanwhile
            consumer.close()

    def take(self) -> Consumer:
        """The consumer made ahead if it is ready, else a new one; either way the caller's
        own, to close."""
        with self._lock:
            consumer, self._ready = self._ready, None
        if consumer is None:
            consumer = self._make()
        self.refill()
        return consumer

    def close(self) -> None:
        """Close the consumer made ahead; one still being made is closed by its thread."""
        with self._lock:
            self._closed = True
            consumer, self._ready = self._ready, None
        if consumer is not None:
            consumer.close()
