"""What the DAE delivered for a run, counted back from the events topic: a restarted IOC's
simulated DAE has lost its memory, but every frame it delivered is in Kafka (as a real DAE's
counts survive in the DAE while its IOC restarts)."""

from __future__ import annotations

import logging

import numpy as np
from confluent_kafka import TopicPartition

from datastream.event_messages import Events, read_stream
from datastream.frames import FrameBook
from datastream.kafka_client import KafkaSettings, make_consumer
from datastream.repeats import RecentMessages
from datastream.run_window import Window, pulses_in_window
from ioc.dae import DaeCounters

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000


def count_run_events(kafka: KafkaSettings, topic: str, source: str, start_ns: int,
                     timeout: float = 60.0, stop_ns: int | None = None,
                     periods: int = 1, monitors: frozenset[str] = frozenset()) -> DaeCounters:
    """The counters of `source`'s events on `topic` in the run's pulses (start_ns <= t <
    stop_ns), up to the end of the topic as it is now: by the writer's and the live view's
    rules (datastream.frames), so a message sent again (a producer's retry) counts once, as
    in the file."""
    consumer = make_consumer(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        wanted = [TopicPartition(topic, p, start_ns // NS_PER_MS) for p in metadata.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in wanted}
        starts = consumer.offsets_for_times(wanted, timeout=10)
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        counter = RunCounter(source, Window(start_ns, stop_ns), monitors)
        while todo:
            msg = consumer.poll(timeout)
            if msg is None:
                raise TimeoutError(f"{topic} did not deliver up to its end within {timeout}s")
            if msg.error():
                continue
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
            try:
                counter.count(msg.value())
            except Exception:  # a malformed message counts for nothing, as in the writer
                continue
        return counter.counters(periods)
    finally:
        consumer.close()


class RunCounter:
    """Frames (from pu00, datastream.frames) and the events of good frames of one source in a
    run window, each message once; the monitors' events apart."""

    def __init__(self, source: str, window: Window,
                 monitors: frozenset[str] = frozenset()) -> None:
        self.source, self.window, self.monitors = source, window, monitors
        self.book = FrameBook(window)
        self.events = self.monitor_events = 0
        self._recent = RecentMessages()

    def count(self, value: bytes | None) -> int:
        """One message of the events topic; the events it adds to the run's counts."""
        msg = read_stream(value) if value else None
        if msg is None:
            return 0
        if not isinstance(msg, Events):
            self.book.add_pulse(msg)
            return 0
        ours = msg.source_name == self.source
        if not (ours or msg.source_name in self.monitors) or not len(msg.reference_time):
            return 0
        if self._recent.repeated(msg.message_id, int(msg.reference_time[0])):
            return 0
        keep = pulses_in_window(msg.reference_time, self.window)
        per_pulse = np.diff(np.append(msg.reference_time_index, len(msg.time_of_flight)))
        # frames are the detector's: a monitor's messages name the same frames again
        groups = (self.book.take(msg.reference_time, keep, msg.period,
                                  msg.proton_charge) if ours else
                  [(0, keep & self._good(msg.reference_time))])
        n = sum(int(per_pulse[chosen].sum()) for _, chosen in groups)
        if ours:
            self.events += n
        else:
            self.monitor_events += n
        return n

    def _good(self, reference_time: np.ndarray) -> np.ndarray:
        return np.array([self.book.is_good(t) for t in reference_time.tolist()], bool)

    def counters(self, periods: int = 1) -> DaeCounters:
        t = self.book.totals
        good = t.per_period("good_frames", periods)
        return DaeCounters(
            total_counts=self.events, good_frames=t.good_frames, raw_frames=t.raw_frames,
            good_uah=t.good_uah, raw_uah=t.raw_uah, period_good_frames=tuple(good),
            period_good_uah=tuple(t.per_period("good_uah", periods)),
            period_raw_frames=tuple(t.per_period("raw_frames", periods)),
            monitor_counts=self.monitor_events)
