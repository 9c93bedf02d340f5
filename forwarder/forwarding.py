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


class Forwarding:
    def __init__(self, streams: list[Stream], publisher: Publisher, service_id: str,
                 clock_ns: Callable[[], int] = time.time_ns,
                 periodic: set[Stream] | None = None) -> None:
        self._publisher = publisher
        self._service_id = service_id
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._targets: dict[Subscription, list[Stream]] = {}
        self._periodic: set[Stream] = set()
        self._last_ts: dict[Subscription, int] = {}
        self._last_alarm: dict[Subscription, tuple[int, str]] = {}
        self._connection: dict[Subscription, Connection] = {}
        self._last_payload: dict[Stream, bytes] = {}
        self._sequence: dict[Stream, int] = defaultdict(int)
        self._updates = self._forwarded = self._old = self._bad_time = self._errors = 0
        periodic = periodic or set()
        self.set_streams({s: s in periodic for s in streams})

    def set_streams(self, streams: dict[Stream, bool]) -> SubscriptionChange:
        """Forward exactly these (stream -> periodic) from now on."""
        targets: dict[Subscription, list[Stream]] = defaultdict(list)
        for stream in streams:
            targets[(stream.protocol, stream.channel)].append(stream)
        with self._lock:
            previous = self._targets
            before = set(previous)
            self._targets = dict(targets)
            self._periodic = {s for s, periodic in streams.items() if periodic}
            closed = sorted(before - set(targets))
            for sub in closed:
                self._last_ts.pop(sub, None)
                self._last_alarm.pop(sub, None)
                self._connection.pop(sub, None)
            for stream in [s for s in self._last_payload if s not in self._periodic]:
                del self._last_payload[stream]
        for sub in closed:
            self.announce(sub, Connection.DESTROYED, previous[sub])
        return SubscriptionChange(sorted(set(targets) - before), closed)

    def channels(self, protocol: str) -> list[str]:
        with self._lock:
            return sorted(channel for proto, channel in self._targets if proto == protocol)

    def streams(self) -> list[Stream]:
        with self._lock:
            return [s for ss in self._targets.values() for s in ss]

    def connection_states(self) -> dict[Subscription, Connection]:
        with self._lock:
            return dict(self._connection)

    def on_update(self, update: Update) -> None:
        now = self._clock_ns()
        sub = (update.protocol, update.channel)
        ts = update.timestamp_ns
        with self._lock:
            self._updates += 1
            targets = self._targets.get(sub)
            if targets is None:  # closed while this update was on its way
                return
            if ts < EARLIEST_PLAUSIBLE_NS or ts > now + MAX_FUTURE_NS:
                self._bad_time += 1
                return
            if ts < self._last_ts.get(sub, 0):
                self._old += 1
                return
            self._last_ts[sub] = ts
            alarm = (update.severity, update.message)
            alarm_changed = self._last_alarm.get(sub) != alarm
            self._last_alarm[sub] = alarm
            counters = []
            for stream in targets:
                self._sequence[stream] += 1
                counters.append(self._sequence[stream])
        key = update.channel.encode()
        ts_ms = ts // NS_PER_MS
        forwarded = errors = 0
        latest: list[tuple[Stream, bytes]] = []
        for stream, counter in zip(targets, counters, strict=True):
            try:
                payload = SERIALISERS[stream.schema](update, counter)
            except Exception as exc:  # one unencodable value never stops the others
                errors += 1
                log.warning("cannot serialise %s as %s: %s", update.channel, stream.schema, exc)
                continue
            forwarded += self._publisher.publish(stream.topic, key, payload, ts_ms)
            if stream in self._periodic:
                latest.append((stream, payload))
            if alarm_changed:
                self._publisher.publish(stream.topic, key, alarm_message(update), ts_ms)
        with self._lock:
            self._forwarded += forwarded
            self._errors += errors
            self._last_payload.update(latest)

    def on_connection(self, channel: str, state: Connection, protocol: str = "ca") -> None:
        sub = (protocol, channel)
        with self._lock:
            targets = self._targets.get(sub)
            if targets is None and state is not Connection.DESTROYED:
                return
            previous = self._connection.get(sub)
            if previous is state:
                return
            # p4p reports a channel that never connected as disconnected: not news
            if previous is Connection.NEVER_CONNECTED and state is Connection.DISCONNECTED:
                return
            if targets is not None:
                self._connection[sub] = state
            if state is not Connection.CONNECTED:
                self._last_alarm.pop(sub, None)
        log.info("%s (%s): %s", channel, protocol, state.value)
        self.announce(sub, state, targets or [])

    def announce(self, sub: Subscription, state: Connection, streams: list[Stream]) -> None:
        """ep01 for the subscription on every topic it goes to."""
        now = self._clock_ns()
        payload = connection_message(sub[1], state, now, self._service_id)
        for topic in {s.topic for s in streams}:
            self._publisher.publish(topic, sub[1].encode(), payload, now // NS_PER_MS)

    def republish(self) -> int:
        """Send the last value of every periodic stream again, stamped now in Kafka (the
        payload keeps the EPICS timestamp). Returns how many were sent."""
        with self._lock:
            pending = [(s, p) for s, p in self._last_payload.items()
                       if self._connection.get((s.protocol, s.channel)) is Connection.CONNECTED]
        now_ms = self._clock_ns() // NS_PER_MS
        return sum(self._publisher.publish(s.topic, s.channel.encode(), p, now_ms)
                   for s, p in pending)

    def counters(self) -> ForwarderCounters:
        with self._lock:
            return ForwarderCounters(self._updates, self._forwarded, self._old, self._bad_time,
                                     self._errors)
