"""From updates to messages: one subscription per (protocol, channel), fanned out to every
(schema, topic) that forwards it; alarm changes as al00, connection changes as ep01, the PV's
units as un00 (ISIS's schema) at connect and whenever they change.

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
from enum import Enum

from datastream.metrics import LatencyBuckets
from datastream.streams import Stream
from forwarder.publisher import Publisher
from forwarder.serialisers import SERIALISERS, alarm_message, connection_message, units_message
from forwarder.update import Connection, Update

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
# updates stamped before this (e.g. a record never processed: the EPICS epoch, 1990) or more
# than a day ahead of the clock are not physics; they are dropped and counted
EARLIEST_PLAUSIBLE_NS = 946_684_800 * 1_000_000_000  # 2000-01-01
MAX_FUTURE_NS = 86_400 * 1_000_000_000

# how long, and for how many updates, a fresh connection's values wait for its units before
# they go without (the un00 follows when the units come): a CA server answers the units
# subscription with the value's, so this only bounds a server that never does
UNITS_WAIT_NS = 2 * 1_000_000_000
MAX_HELD = 1_000

Subscription = tuple[str, str]  # (protocol, channel)


class _Units(Enum):
    """Units not reported (yet) for this connection, or not sent (yet) on this stream: unlike
    None, which is a PV without units."""

    UNKNOWN = "unknown"


UNKNOWN = _Units.UNKNOWN
Units = str | None | _Units


@dataclass(frozen=True)
class ForwarderCounters:
    updates: int
    forwarded: int
    dropped_old: int
    dropped_bad_time: int
    serialise_errors: int
    units_sent: int = 0  # un00 messages


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
    units_sent: Units = UNKNOWN  # in the last un00 on this stream, this connection


@dataclass(eq=False)
class _Subscribed:
    """What one update needs of its subscription, found with one lookup."""

    targets: list[_Target]
    last_ts: int = 0
    last_alarm: tuple[int, str] | None = None
    units: Units = UNKNOWN  # as the source last reported them, this connection
    units_pending: bool = False  # some target has not been sent `units`: one check per update
    valued: bool = False  # a value went out since it connected (a units change goes out at once)
    # connected, its units not yet reported: its values wait here, so the un00 goes first
    held: list[Update] | None = None
    held_since: int = 0


class Forwarding:
    def __init__(self, streams: list[Stream], publisher: Publisher, service_id: str,
                 clock_ns: Callable[[], int] = time.time_ns,
                 periodic: set[Stream] | None = None, units_reported: bool = False) -> None:
        """units_reported: the sources report every connection's units (on_units), so a fresh
        connection's values wait for them and its un00 goes first. Without, a un00 goes out
        whenever units are reported, before the next value."""
        self._publisher = publisher
        self._units_reported = units_reported
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
        # the last un00 of each channel: re-sent before the periodic values, so a file of a
        # run that began long after the units were last sent still has them
        self._last_units: dict[str, bytes] = {}
        self._updates = self._forwarded = self._old = self._bad_time = self._errors = 0
        self._units_sent = 0
        self._holding: set[Subscription] = set()  # those whose values wait for their units
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
            kept_targets = {t.stream: t for sub in previous.values() for t in sub.targets}
            subscribed = {}
            for sub, sub_streams in grouped.items():
                targets = []
                for s in sub_streams:
                    kept_target = kept_targets.get(s)
                    targets.append(_Target(s, streams[s]) if kept_target is None else _Target(
                        s, streams[s], kept_target.sequence, kept_target.units_sent))
                kept = previous.get(sub)
                if kept is None:
                    subscribed[sub] = _Subscribed(targets)
                else:  # the connection's state carries on; only its streams change
                    kept.targets = targets
                    kept.units_pending = kept.units is not UNKNOWN and any(
                        t.units_sent != kept.units for t in targets)
                    subscribed[sub] = kept
            self._subscribed = subscribed
            closed = sorted(set(previous) - set(subscribed))
            for sub in closed:
                self._connection.pop(sub, None)
                self._holding.discard(sub)
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
            held = sub.held
            if held is not None:  # just connected: its values wait for its units
                held.append(update)
                if len(held) < MAX_HELD and now - sub.held_since < UNITS_WAIT_NS:
                    return
                log.warning("%s (%s): no units within %d updates or %.0f s of connecting; "
                            "forwarding without", update.channel, update.protocol, len(held),
                            UNITS_WAIT_NS / 1e9)
                self._stop_holding((update.protocol, update.channel), sub)
            else:
                if ts < EARLIEST_PLAUSIBLE_NS or ts > now + MAX_FUTURE_NS:
                    self._bad_time += 1
                    return
                if ts < sub.last_ts:
                    self._old += 1
                    return
                sub.last_ts = ts
                sub.valued = True
                alarm = (update.severity, update.message)
                alarm_changed = sub.last_alarm != alarm
                sub.last_alarm = alarm
                units_due = self._units_due(sub) if sub.units_pending else None
                targets = sub.targets
                counters = []
                for target in targets:
                    target.sequence += 1
                    counters.append(target.sequence)
        if held is not None:
            self._release(held)
            return
        key = update.channel.encode()
        ts_ms = ts // NS_PER_MS
        if units_due is not None:  # on each topic before the value they label, with its time
            self._publish_units(update.channel, units_due, ts)
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
            held = None
            if subscribed is not None:
                self._connection[sub] = state
                if state is not Connection.CONNECTED:
                    subscribed.last_alarm = None
                    held = self._stop_holding(sub, subscribed)
                    # the next connection sends its units again, changed or not
                    subscribed.units, subscribed.units_pending = UNKNOWN, False
                    for target in subscribed.targets:
                        target.units_sent = UNKNOWN
                else:
                    subscribed.valued = False
                    if self._units_reported and subscribed.units is UNKNOWN:
                        subscribed.held, subscribed.held_since = [], self._clock_ns()
                        self._holding.add(sub)
        if held:  # values from before the disconnection, without units
            self._release(held)
        log.info("%s (%s): %s", channel, protocol, state.value)
        self.announce(sub, state, [t.stream for t in subscribed.targets] if subscribed else [])

    def on_units(self, channel: str, units: str | None, protocol: str = "ca",
                 update_follows: bool = False) -> None:
        """The PV's units as its source reports them: at connect, then when they may have
        changed. A un00 goes out on every stream not yet sent these units: before the next
        value, stamped with its time; or, when a value went out since connecting and no
        update follows (a CA property change), now, stamped with that value's time (the value
        the new units label). update_follows: an update carrying them comes next (PVA)."""
        sub = (protocol, channel)
        with self._lock:
            subscribed = self._subscribed.get(sub)
            if subscribed is None:
                return
            if units != subscribed.units:
                subscribed.units = units
                subscribed.units_pending = any(t.units_sent != units
                                               for t in subscribed.targets)
            held = self._stop_holding(sub, subscribed)
            due = (self._units_due(subscribed)
                   if subscribed.units_pending and held is None and subscribed.valued
                   and not update_follows else None)
            ts = subscribed.last_ts
        if held:  # the first of them carries the un00 before it
            self._release(held)
        elif due is not None:
            self._publish_units(channel, due, ts)

    def release_overdue(self) -> None:
        """Forward the values of connections whose units did not come in time (called
        periodically: a PV that does not update again would wait for good)."""
        now = self._clock_ns()
        with self._lock:
            overdue = [sub for sub in self._holding
                       if now - self._subscribed[sub].held_since >= UNITS_WAIT_NS]
            released = [self._stop_holding(sub, self._subscribed[sub]) for sub in overdue]
        for (protocol, channel), held in zip(overdue, released, strict=True):
            log.warning("%s (%s): no units within %.0f s of connecting; forwarding without",
                        channel, protocol, UNITS_WAIT_NS / 1e9)
            if held:
                self._release(held)

    def _stop_holding(self, sub: Subscription, subscribed: _Subscribed) -> list[Update] | None:
        """Under the lock: the values that waited for the units (None: none did). They are
        counted again when released through on_update."""
        held = subscribed.held
        if held is not None:
            subscribed.held = None
            self._holding.discard(sub)
            self._updates -= len(held)
        return held

    def _release(self, held: list[Update]) -> None:
        for update in held:
            self.on_update(update)

    @staticmethod
    def _units_due(subscribed: _Subscribed) -> tuple[str | None, list[str]]:
        """Under the lock: the units and the topic of each stream not yet sent them (one un00
        per stream, as al00), marked sent."""
        units = subscribed.units
        subscribed.units_pending = False
        if isinstance(units, _Units):
            return None, []
        topics = []
        for target in subscribed.targets:
            if target.units_sent != units:
                target.units_sent = units
                topics.append(target.stream.topic)
        return units, topics

    def _publish_units(self, channel: str, due: tuple[str | None, list[str]],
                       timestamp_ns: int) -> None:
        units, topics = due
        if not topics:
            return
        payload = units_message(channel, timestamp_ns, units)
        key, ts_ms = channel.encode(), timestamp_ns // NS_PER_MS
        sent = sum(self._publisher.publish(topic, key, payload, ts_ms) for topic in topics)
        with self._lock:
            self._units_sent += sent
            self._last_units[channel] = payload

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
            connected = [s for s in self._last_payload
                         if self._connection.get((s.protocol, s.channel)) is Connection.CONNECTED]
            # each stream's units before its value, as when they were first sent
            pending = [(s, self._last_units[s.channel]) for s in connected
                       if s.channel in self._last_units]
            pending += [(s, self._last_payload[s]) for s in connected]
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
                                     self._errors, self._units_sent)
