"""The sample-environment logs the live page draws as time series: f144 and f142 of numeric
scalars on <INST>_sampleEnv, the last KEEP points of each source, from LOOKBACK_S before the
live view started, and each source's units from the forwarder's un00. Arrays, strings and
alarms are left to the file. One thread reads the
topic (run()); the page reads copies (snapshot())."""

from __future__ import annotations

import collections
import logging
import math
import numbers
import threading
import time

from confluent_kafka import TopicPartition
from streaming_data_types.logdata_f144 import deserialise_f144

from datastream.kafka_client import KafkaSettings, make_consumer, offsets_since
from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from datastream.schemas.un00 import deserialise_un00

log = logging.getLogger(__name__)

KEEP = 2000
LOOKBACK_S = 3600
MAX_POINTS_SHOWN = 500  # a page's chart is a few hundred pixels wide
MAX_SOURCES = 500  # the page draws a few dozen; a topic of many more names bounds memory here


class SampleEnvLogs:
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self._lock = threading.Lock()
        self._logs: dict[str, collections.deque[tuple[float, float]]] = {}
        self._units: dict[str, str] = {}
        self.skipped = 0

    def add(self, payload: bytes) -> None:
        """One message: kept if it is a numeric scalar's f144/f142; raises if malformed."""
        sid = schema_id(payload)
        if sid == "f144":
            data = deserialise_f144(payload)
            source, value, t_ns = data.source_name, data.value, data.timestamp_unix_ns
        elif sid == "f142":
            data = deserialise_f142(payload)
            source, value, t_ns = data.source_name, data.value, data.timestamp_ns
        elif sid == "un00":  # the latest units of a source label its axis
            units = deserialise_un00(payload)
            with self._lock:
                if units.source_name in self._units or len(self._units) < MAX_SOURCES:
                    self._units[units.source_name] = units.units or ""
            return
        else:
            return
        if hasattr(value, "ndim") and value.ndim == 0:
            value = value.item()
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return
        value = float(value)
        if not math.isfinite(value):  # a disconnected sensor's NaN: nothing to draw
            return
        with self._lock:
            points = self._logs.get(source)
            if points is None:
                if len(self._logs) >= MAX_SOURCES:
                    return
                points = self._logs[source] = collections.deque(maxlen=KEEP)
            points.append((t_ns / 1e9, value))

    def units(self) -> dict[str, str]:
        """source -> its units, as its un00 last said ("" for none)."""
        with self._lock:
            return dict(self._units)

    def snapshot(self) -> dict[str, list[list[float]]]:
        """source -> [[unix time s, value], ...] in time order, at most MAX_POINTS_SHOWN."""
        with self._lock:
            logs = {name: list(points) for name, points in self._logs.items()}
        out = {}
        for name, points in sorted(logs.items()):
            points.sort()
            step = max(1, len(points) // MAX_POINTS_SHOWN)
            out[name] = [list(p) for p in points[::step]]
        return out

    def run(self, stop: threading.Event) -> None:
        consumer = make_consumer(self.kafka)
        try:
            while not stop.is_set():
                try:
                    parts = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
                    if parts.error is not None or not parts.partitions:
                        raise LookupError(f"topic {self.topic} not found")
                    since = (time.time_ns() // 1_000_000) - LOOKBACK_S * 1000
                    consumer.assign(offsets_since(consumer, [
                        TopicPartition(self.topic, p, since) for p in parts.partitions]))
                    break
                except Exception as exc:  # the broker or topic not there yet: retried
                    log.debug("sample-environment logs: %s", exc)
                    stop.wait(2)
            while not stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    if msg.error():
                        continue
                    try:
                        self.add(msg.value() or b"")
                    except Exception:  # one bad message never stops the logs
                        self.skipped += 1
        finally:
            consumer.close()
