"""One run of a file onto the instrument's topics: pl72, then the timeline (pu00 and ev44
per frame with the frame's key, monitors' ev44, f144 logs), then 6s4t, every time shifted
so the run starts at `start_ms` and every Kafka timestamp the message's time in ms."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Producer
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.kafka_client import DeliveryError, deliver
from datastream.schemas.pu00 import serialise_pu00
from datastream.time_channels import TimeChannels
from datastream.topics import InstrumentTopics
from replay.errors import ReplayError
from replay.pacing import Pacer
from replay.progress import Progress
from replay.run_file import RunFile
from replay.run_start import RunIdentity, run_start, run_stop
from replay.timeline import Frame, LogUpdate, timeline

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
# kafka_event_aggregator's bound on one ev44, as the simulated DAE's
MAX_EVENTS_PER_MESSAGE = 100_000
DELIVERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Window:
    """The part of the file to send, in seconds after the run's start (None: to its end)."""

    from_s: float = 0.0
    to_s: float | None = None

    def bounds_ns(self, run: RunFile) -> tuple[int, int]:
        lo = run.start_ns + round(self.from_s * 1e9)
        hi = run.stop_ns if self.to_s is None else min(run.stop_ns, run.start_ns
                                                       + round(self.to_s * 1e9))
        if hi <= lo:
            length = (run.stop_ns - run.start_ns) / 1e9
            raise ReplayError(f"nothing to send: the run is {length:.3f} s long, and --from "
                              f"{self.from_s} s is at or past its end")
        return lo, hi


@dataclass
class Sent:
    """What one run sent, for the caller's report."""

    identity: RunIdentity
    start_ms: int
    stop_ms: int
    events: int
    pulses: int
    log_values: int
    seconds: float


class Replayer:
    """Sends runs through one producer; frame keys and message ids go on across runs, as
    one DAE's do."""

    def __init__(self, producer: Producer, topics: InstrumentTopics, events_source: str,
                 speed: float, max_lead_s: float, broker: str, progress_interval_s: float = 2.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.producer = producer
        self.topics = topics
        self.events_source = events_source
        self.speed = speed
        self.max_lead_ns = round(max_lead_s * 1e9)
        self.broker = broker
        self.progress_interval_s = progress_interval_s
        self.clock = clock
        self._frame_key = 0
        self._message_id = clock() // 1000
        self._failed: list[str] = []

    # -- delivery --
    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))

    def _produce(self, topic: str, payload: bytes, timestamp_ms: int,
                 key: bytes | None = None) -> None:
        while True:
            try:
                self.producer.produce(topic, payload, key=key, timestamp=timestamp_ms,
                                      on_delivery=self._on_delivery)
                return
            except BufferError:
                # librdkafka's queue is full: wait for deliveries rather than drop events
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise ReplayError(f"cannot send to {topic}: {exc}") from exc

    def _wait(self, seconds: float) -> None:
        self.producer.poll(min(seconds, 0.1))

    def _flush(self) -> None:
        remaining = self.producer.flush(DELIVERY_TIMEOUT_S)
        if remaining:
            raise ReplayError(f"{remaining} messages not delivered within "
                              f"{DELIVERY_TIMEOUT_S:.0f}s: is the broker up?")
        if self._failed:
            raise ReplayError(f"{len(self._failed)} messages were refused by the broker: "
                              f"{self._failed[0]}")

    # -- a run --
    def replay(self, run: RunFile, identity: RunIdentity, start_ms: int, window: Window,
               tcb: TimeChannels) -> Sent:
        lo_ns, hi_ns = window.bounds_ns(run)
        start_ns = start_ms * NS_PER_MS
        shift = start_ns - lo_ns
        stop_ms = -(-(hi_ns + shift) // NS_PER_MS)  # the ms at or after: all pulses before it
        try:
            deliver(self.producer, self.topics.run_info,
                    run_start(run, identity, self.topics, self.events_source, start_ms, tcb,
                              self.broker),
                    key=identity.job_id.encode(), timestamp_ms=start_ms)
        except DeliveryError as exc:
            raise ReplayError(f"the run start was not delivered: {exc}") from exc
        progress = Progress(f"run {identity.run_number}", (hi_ns - lo_ns) / 1e9,
                            self.progress_interval_s)
        pacer = Pacer(self.speed, start_ns, self.max_lead_ns, self._wait, self.clock)
        last_ns = start_ns
        try:
            for item in timeline(run, lo_ns, hi_ns):
                t = item.time_ns + shift
                pacer.wait_for(t)
                if isinstance(item, LogUpdate):
                    self._send_log(item, t, start_ns)
                    progress.log_values += 1
                    continue
                progress.frame(self._send_frame(run, item, t), (t - start_ns) / 1e9)
                last_ns = max(last_ns, t)
            pacer.wait_for(stop_ms * NS_PER_MS)
            self._flush()
        except KeyboardInterrupt:
            # as ENDRUN: the run ends after what was sent, and its file is kept
            self._stop(identity, -(-(last_ns + 1) // NS_PER_MS), abort=False)
            print(progress.summary() + " (interrupted: run ended)", flush=True)
            raise
        except ReplayError:
            # what was sent is a part of the run: the writer discards its file
            self._stop(identity, -(-(last_ns + 1) // NS_PER_MS), abort=True)
            raise
        self._stop(identity, stop_ms, abort=False)
        return Sent(identity, start_ms, stop_ms, progress.events, progress.pulses,
                    progress.log_values, time.monotonic() - progress.started)

    def _stop(self, identity: RunIdentity, stop_ms: int, abort: bool) -> None:
        try:
            self.producer.flush(DELIVERY_TIMEOUT_S)
            deliver(self.producer, self.topics.run_info,
                    run_stop(identity, str(uuid.uuid4()), stop_ms, abort),
                    key=identity.job_id.encode(), timestamp_ms=stop_ms,
                    timeout=DELIVERY_TIMEOUT_S)
        except DeliveryError as exc:
            raise ReplayError(f"run {identity.run_number}: the run stop was not delivered "
                              f"({exc}); send it again or stop the writer's job "
                              f"{identity.job_id}") from exc

    def _send_frame(self, run: RunFile, frame: Frame, t: int) -> int:
        """The frame's pu00 and ev44s; how many events they carried."""
        # one key a frame, so its messages stay in order: the DAE's 8-byte frame counter
        self._frame_key += 1
        key = self._frame_key.to_bytes(8, "big")
        ts_ms = t // NS_PER_MS
        vetos = 0
        if frame.detector:
            period, charge, vetos = (run.frames.of(frame.framelog_row)
                                     if frame.framelog_row is not None else (0, None, 0))
            self._message_id += 1
            self._produce(self.topics.events, serialise_pu00(
                self.events_source, self._message_id, t, vetos, period, charge), ts_ms, key)
            pulses = frame.detector
            if len(pulses) == 1:
                tof, ids = pulses[0].time_of_flight, pulses[0].pixel_id
            else:  # banks of one detector: one stream, as ISIS's DAE sends them
                tof = np.concatenate([p.time_of_flight for p in pulses])
                ids = np.concatenate([p.pixel_id for p in pulses])
            # a good frame sends its events even when there are none, as the DAE does
            self._send_events(self.events_source, t, tof, ids, key, ts_ms,
                              empty=not vetos)
        events = sum(len(p.time_of_flight) for p in frame.detector)
        for pulse in frame.monitors:
            self._send_events(pulse.source, t, pulse.time_of_flight, pulse.pixel_id, key,
                              ts_ms, empty=True)
            events += len(pulse.time_of_flight)
        self.producer.poll(0)
        return events

    def _send_events(self, source: str, t: int, tof: np.ndarray, ids: np.ndarray,
                     key: bytes, ts_ms: int, empty: bool) -> None:
        if not len(tof) and not empty:
            return
        ref, index = np.array([t], np.int64), np.zeros(1, np.int32)
        for a in range(0, max(len(tof), 1), MAX_EVENTS_PER_MESSAGE):
            b = a + MAX_EVENTS_PER_MESSAGE
            self._message_id += 1
            self._produce(self.topics.events, serialise_ev44(
                source, self._message_id, ref, index, tof[a:b], ids[a:b]), ts_ms, key)

    def _send_log(self, update: LogUpdate, t: int, start_ns: int) -> None:
        # the value a log had at the start keeps its own time in the f144, but its Kafka
        # timestamp is the start's: a writer seeks the topics from just before the start
        # and would never read a message stamped long before it
        self._produce(self.topics.name(update.topic_suffix),
                      serialise_f144(update.source, update.value, t),
                      max(t, start_ns) // NS_PER_MS)
