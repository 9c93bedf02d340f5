"""What the DAE delivered for a run, counted back from the events topic: a restarted IOC's
simulated DAE has lost its memory, but every frame it delivered is in Kafka (as a real DAE's
counts survive in the DAE while its IOC restarts)."""

from __future__ import annotations

import logging

import numpy as np
from confluent_kafka import TopicPartition

from datastream.event_messages import read_events
from datastream.kafka_client import KafkaSettings, make_consumer
from datastream.repeats import RecentMessages
from datastream.run_window import Window, pulses_in_window

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000


def count_run_events(kafka: KafkaSettings, topic: str, source: str, start_ns: int,
                     timeout: float = 60.0, stop_ns: int | None = None) -> tuple[int, int]:
    """(events, frames) of `source` on `topic` in the run's pulses (start_ns <= t < stop_ns),
    up to the end of the topic as it is now: by the writer's and the live view's rules, so a
    message sent again (a producer's retry) counts once, as in the file."""
    consumer = make_consumer(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        wanted = [TopicPartition(topic, p, start_ns // NS_PER_MS) for p in metadata.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in wanted}
        starts = consumer.offsets_for_times(wanted, timeout=10)
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        events = frames = 0
        counter = _RunCounter(source, Window(start_ns, stop_ns))
        while todo:
            msg = consumer.poll(timeout)
            if msg is None:
                raise TimeoutError(f"{topic} did not deliver up to its end within {timeout}s")
            if msg.error():
                continue
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
            value = msg.value()
            try:
                counted = counter.count(value)
            except Exception:  # a malformed message counts for nothing, as in the writer
                continue
            events += counted[0]
            frames += counted[1]
        return events, frames
    finally:
        consumer.close()


class _RunCounter:
    """Events and frames of one source's messages in a run window, each message once."""

    def __init__(self, source: str, window: Window) -> None:
        self.source, self.window = source, window
        self._recent = RecentMessages()

    def count(self, value: bytes | None) -> tuple[int, int]:
        """(events, frames) of one event message (ev44, or ev42 from a DAE set to Mantid's
        schema) in the run's pulses; (0, 0) for another source's or one seen already."""
        ev = read_events(value) if value else None
        if ev is None or ev.source_name != self.source or not len(ev.reference_time):
            return 0, 0
        if self._recent.repeated(ev.message_id, int(ev.reference_time[0])):
            return 0, 0
        keep = pulses_in_window(ev.reference_time, self.window)
        per_pulse = np.diff(np.append(ev.reference_time_index, len(ev.time_of_flight)))
        return int(per_pulse[keep].sum()), int(keep.sum())
