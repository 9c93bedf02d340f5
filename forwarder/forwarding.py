"""From updates to messages: one subscription per (protocol, channel), fanned out to every
(schema, topic) that forwards it; alarm changes as al00, connection changes as ep01.

The stream set can change while updates flow (config topic, IBEX blocks): set_streams()
says which subscriptions to open and close, and removed channels get ep01 DESTROYED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from datastream.metrics import LatencyBuckets
from datastream.streams import Stream
from forwarder.publisher import Publisher
from forwarder.serialisers import SERIALISERS, alarm_message, connection_message
from forwarder.update import Connection, Update

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
# updates stamped before this (e.g. a record never processed: the EPICS epoch, 1990) or more
# than a day ahead of the clock are not physics; they are dropped and counted
EARLIEST_PLAUSIBLE_NS = 946_684_800 * 1_000_000_000  # 2000-01-01
MAX_FUTURE_NS = 86_400 * 1_000_000_000

Subscription = tuple[str, str]  # (protocol, channel)


@dataclass(frozen=True)
class ForwarderCounters:
    updates: int
    forwarded: int
    dropped_old: int
    dropped_bad_time: int
    serialise_errors: int


@dataclass(frozen=True)
class SubscriptionChange:
    opened: list[Subscription]
    closed: list[Subscription]

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed)


@dataclass(eq=False)
class _Target:
    """A stream a subscription goes to, with the count of messages sent on it."""

    stream: Stream
    periodic: bool
    sequence: int = 0


@dataclass(eq=False)
class _Subscribed:
    """What one update needs of its subscription, found with one lookup."""

    targets: list[_Target]
    last_ts: int = 0
    last_alarm: tuple[int, str] | None = None


class Forwarding:
    def __init__(self, streams: list[Stream], publisher: Publisher, service_id: str,
                 clock_ns: Callable[[], int] = time.time_ns,
                 periodic: set[Stream] | None = None) -> None:
        self._publisher = publisher
        self._service_id = service_id
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._subscribed: dict[Subscription, _Subscribed] = {}
        self._connection: dict[Subscription, Connection] = {}
        self._last_payload: dict[Stream, bytes] = {}
        # the last ep01 of each subscription, stamped with the time of the change: re-sent
        # with the periodic values, so a file of a run that began long after the last
        # connection change still has its connection state
        self._last_connection: dict[Subscription, bytes] = {}
        self._updates = self._forwarded = self._old = self._bad_time = self._errors = 0
        self.latency = LatencyBuckets()  # written under self._lock, read by the scrape
        periodic = periodic or set()
        self.set_streams({s: s in periodic for s in streams})

    def set_streams(self, streams: dict[Stream, bool]) -> SubscriptionChange:
        """Forward exactly these (stream -> periodic) from now on."""
        grouped: dict[Subscription, list[Stream]] = defaultdict(list)
        for stream in streams:
            grouped[(stream.protocol, stream.channel)].append(stream)
        with self._lock:
            previous = self._subscribed
            sequences = {t.stream: t.sequence for sub in previous.values() for t in sub.targets}
            subscribed = {}
            for sub, sub_streams in grouped.items():
                targets = [_Target(s, streams[s], sequences.get(s, 0)) for s in sub_streams]
                kept = previous.get(sub)
                subscribed[sub] = (_Subscribed(targets) if kept is None
                                   else _Subscribed(targets, kept.last_ts, kept.last_alarm))
            self._subscribed = subscribed
            closed = sorted(set(previous) - set(subscribed))
            for sub in closed:
                self._connection.pop(sub, None)
            for stream in [s for s in self._last_payload if not streams.get(s, False)]:
                del self._last_payload[stream]
        for sub in closed:
            self.announce(sub, Connection.DESTROYED, [t.stream for t in previous[sub].targets])
        return SubscriptionChange(sorted(set(subscribed) - set(previous)), closed)

    def channels(self, protocol: str) -> list[str]:
        with self._lock:
            return sorted(channel for proto, channel in self._subscribed if proto == protocol)

    def streams(self) -> list[Stream]:
        with self._lock:
            return [t.stream for sub in self._subscribed.values() for t in sub.targets]

    def connection_states(self) -> dict[Subscription, Connection]:
        with self._lock:
            return dict(self._connection)

    def on_update(self, update: Update) -> None:
        now = self._clock_ns()
        ts = update.timestamp_ns
        with self._lock:
            self._updates += 1
            sub = self._subscribed.get((update.protocol, update.channel))
            if sub is None:  # closed while this update was on its way
                return
            if ts < EARLIEST_PLAUSIBLE_NS or ts > now + MAX_FUTURE_NS:
                self._bad_time += 1
                return
            if ts < sub.last_ts:
                self._old += 1
                return
            sub.last_ts = ts
            alarm = (update.severity, update.message)
            alarm_changed = sub.last_alarm != alarm
            sub.last_alarm = alarm
            targets = sub.targets
            counters = []
            for target in targets:
                target.sequence += 1
                counters.append(target.sequence)
        key = update.channel.encode()
        ts_ms = ts // NS_PER_MS
        forwarded = errors = 0
        latest: list[tuple[Stream, bytes]] = []
        for target, counter in zip(targets, counters, strict=True):
            stream = target.stream
            try:
                payload = SERIALISERS[stream.schema](update, counter)
            except Exception as exc:  # one unencodable value never stops the others
                errors += 1
                log.warning("cannot serialise %s as %s: %s", update.channel, stream.schema, exc)
                continue
            forwarded += self._publisher.publish(stream.topic, key, payload, ts_ms)
            if target.periodic:
                latest.append((stream, payload))
            if alarm_changed:
                self._publisher.publish(stream.topic, key, alarm_message(update), ts_ms)
        with self._lock:
            self._forwarded += forwarded
            self._errors += errors
            if forwarded:  # EPICS timestamp to its arrival here (serialising adds µs)
                self.latency.observe((now - ts) / 1e9)
            if latest:
                self._last_payload.update(latest)

    def on_connection(self, channel: str, state: Connection, protocol: str = "ca") -> None:
        sub = (protocol, channel)
        with self._lock:
            subscribed = self._subscribed.get(sub)
            if subscribed is None and state is not Connection.DESTROYED:
                return
            previous = self._connection.get(sub)
            if previous is state:
                return
            # p4p reports a channel that never connected as disconnected: not news
            if previous is Connection.NEVER_CONNECTED and state is Connection.DISCONNECTED:
                return
            if subscribed is not None:
                self._connection[sub] = state
                if state is not Connection.CONNECTED:
                    subscribed.last_alarm = None
        log.info("%s (%s): %s", channel, protocol, state.value)
        self.announce(sub, state, [t.stream for t in subscribed.targets] if subscribed else [])

    def announce(self, sub: Subscription, state: Connection, streams: list[Stream]) -> None:
        """ep01 for the subscription on every topic it goes to."""
        now = self._clock_ns()
        payload = connection_message(sub[1], state, now, self._service_id)
        with self._lock:
            if state is Connection.DESTROYED:
                self._last_connection.pop(sub, None)
            else:
                self._last_connection[sub] = payload
        for topic in {s.topic for s in streams}:
            self._publisher.publish(topic, sub[1].encode(), payload, now // NS_PER_MS)

    def republish(self) -> int:
        """Send the last value of every periodic stream again, stamped now in Kafka (the
        payload keeps the EPICS timestamp). Returns how many were sent."""
        with self._lock:
            pending = [(s, p) for s, p in self._last_payload.items()
                       if self._connection.get((s.protocol, s.channel)) is Connection.CONNECTED]
            # the connection state of every periodic stream, connected or not
            pending += [(t.stream, self._last_connection[sub])
                        for sub, subscribed in self._subscribed.items()
                        if sub in self._last_connection
                        for t in subscribed.targets if t.periodic]
        now_ms = self._clock_ns() // NS_PER_MS
        return sum(self._publisher.publish(s.topic, s.channel.encode(), p, now_ms)
                   for s, p in pending)

    def pv_counts(self) -> tuple[int, int, int]:
        """(PVs subscribed, of them connected, streams forwarded), for the metrics: counted
        under the lock without copying the stream lists."""
        with self._lock:
            connected = sum(1 for sub in self._subscribed
                            if self._connection.get(sub) is Connection.CONNECTED)
            streams = sum(len(sub.targets) for sub in self._subscribed.values())
            return len(self._subscribed), connected, streams

    def latency_copy(self) -> LatencyBuckets:
        with self._lock:
            return self.latency.copy()

    def counters(self) -> ForwarderCounters:
        with self._lock:
            return ForwarderCounters(self._updates, self._forwarded, self._old, self._bad_time,
                                     self._errors)
