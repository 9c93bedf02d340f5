"""From updates to messages: one subscription per (protocol, channel), fanned out to every
(schema, topic) that forwards it; alarm changes as al00, connection changes as ep01."""

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


@dataclass(frozen=True)
class ForwarderCounters:
    updates: int
    forwarded: int
    dropped_old: int
    dropped_bad_time: int
    serialise_errors: int


class Forwarding:
    def __init__(self, streams: list[Stream], publisher: Publisher, service_id: str,
                 clock_ns: Callable[[], int] = time.time_ns,
                 periodic: set[Stream] | None = None) -> None:
        self._targets: dict[str, list[Stream]] = defaultdict(list)
        for stream in dict.fromkeys(streams):
            self._targets[stream.channel].append(stream)
        self._publisher = publisher
        self._service_id = service_id
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._last_ts: dict[str, int] = {}
        self._last_alarm: dict[str, tuple[int, str]] = {}
        self._connection: dict[str, Connection] = {}
        self._periodic = periodic or set()
        self._last_payload: dict[Stream, bytes] = {}
        self._updates = self._forwarded = self._old = self._bad_time = self._errors = 0

    def channels(self, protocol: str) -> list[str]:
        return sorted({s.channel for ss in self._targets.values() for s in ss
                       if s.protocol == protocol})

    def streams(self) -> list[Stream]:
        return [s for ss in self._targets.values() for s in ss]

    def connection_states(self) -> dict[str, Connection]:
        with self._lock:
            return dict(self._connection)

    def on_update(self, update: Update) -> None:
        now = self._clock_ns()
        with self._lock:
            self._updates += 1
            ts = update.timestamp_ns
            if ts < EARLIEST_PLAUSIBLE_NS or ts > now + MAX_FUTURE_NS:
                self._bad_time += 1
                return
            if ts < self._last_ts.get(update.channel, 0):
                self._old += 1
                return
            self._last_ts[update.channel] = ts
            alarm = (update.severity, update.message)
            alarm_changed = self._last_alarm.get(update.channel) != alarm
            self._last_alarm[update.channel] = alarm
        key = update.channel.encode()
        ts_ms = update.timestamp_ns // NS_PER_MS
        for stream in self._targets.get(update.channel, ()):
            try:
                payload = SERIALISERS[stream.schema](update)
            except Exception as exc:  # one unencodable value never stops the others
                with self._lock:
                    self._errors += 1
                log.warning("cannot serialise %s as %s: %s", update.channel, stream.schema, exc)
                continue
            if self._publisher.publish(stream.topic, key, payload, ts_ms):
                with self._lock:
                    self._forwarded += 1
            if stream in self._periodic:
                with self._lock:
                    self._last_payload[stream] = payload
            if alarm_changed:
                self._publisher.publish(stream.topic, key, alarm_message(update), ts_ms)

    def on_connection(self, channel: str, state: Connection) -> None:
        with self._lock:
            if self._connection.get(channel) is state:
                return
            self._connection[channel] = state
            if state is not Connection.CONNECTED:
                self._last_alarm.pop(channel, None)
        now = self._clock_ns()
        log.info("%s: %s", channel, state.value)
        payload = connection_message(channel, state, now, self._service_id)
        for topic in {s.topic for s in self._targets.get(channel, ())}:
            self._publisher.publish(topic, channel.encode(), payload, now // NS_PER_MS)

    def republish(self) -> int:
        """Send the last value of every periodic stream again, stamped now in Kafka (the
        payload keeps the EPICS timestamp). Returns how many were sent."""
        with self._lock:
            pending = [(s, p) for s, p in self._last_payload.items()
                       if self._connection.get(s.channel) is Connection.CONNECTED]
        now_ms = self._clock_ns() // NS_PER_MS
        return sum(self._publisher.publish(s.topic, s.channel.encode(), p, now_ms)
                   for s, p in pending)

    def counters(self) -> ForwarderCounters:
        with self._lock:
            return ForwarderCounters(self._updates, self._forwarded, self._old, self._bad_time,
                                     self._errors)
