"""What the CA and PVA monitors share: the subscribed channels, where updates, units and
connection changes go, opening and closing subscriptions while running, and the end
(DESTROYED)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from forwarder.update import Connection, Update

# (channel, units or None, protocol, whether an update carrying them follows at once)
UnitsCallback = Callable[[str, "str | None", str, bool], None]


def _ignore_units(_channel: str, _units: str | None, _protocol: str, _follows: bool) -> None:
    pass


class MonitorSource:
    """Reports each connection's units once it connected (before or after its first value),
    then whenever they may have changed; the receiver (Forwarding.on_units) tells changes."""

    protocol = ""

    def __init__(self, on_update: Callable[[Update], None],
                 on_connection: Callable[[str, Connection, str], None],
                 on_units: UnitsCallback = _ignore_units) -> None:
        self._on_update = on_update
        self._on_connection = on_connection
        self._on_units = on_units
        self._context: object | None = None
        self._lock = threading.Lock()
        self._subscriptions: dict[str, object] = {}
        # updates dropped before they reached the forwarder (a client library's bounded queue)
        self.dropped = 0

    def add(self, channels: Iterable[str]) -> None:
        """Subscribe without blocking; a PV that does not exist yet is found when it appears."""
        with self._lock:
            new = [c for c in channels if c not in self._subscriptions]
            if not new:
                return
            for channel in new:
                self._connection(channel, Connection.NEVER_CONNECTED)
            if self._context is None:
                self._context = self._make_context()
            self._subscriptions.update(self._subscribe(new))

    def remove(self, channels: Iterable[str]) -> None:
        with self._lock:
            ended = [self._subscriptions.pop(c) for c in channels if c in self._subscriptions]
        for subscription in ended:
            self._end_subscription(subscription)

    def channels(self) -> list[str]:
        with self._lock:
            return sorted(self._subscriptions)

    def _connection(self, channel: str, state: Connection) -> None:
        self._on_connection(channel, state, self.protocol)

    def _make_context(self) -> object:
        raise NotImplementedError

    def _subscribe(self, channels: list[str]) -> dict[str, object]:
        raise NotImplementedError

    def _end_subscription(self, subscription: object) -> None:
        raise NotImplementedError

    def _close_context(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            ended = dict(self._subscriptions)
            self._subscriptions.clear()
        # closing the context ends every subscription at once: cancelling thousands one by one
        # made a loaded forwarder slow to stop
        if self._context is not None:
            self._close_context()
            self._context = None
        for channel in ended:
            self._connection(channel, Connection.DESTROYED)
