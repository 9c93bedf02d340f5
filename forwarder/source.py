"""What the CA and PVA monitors share: the channels, where updates and connection changes go,
and the end of a subscription (DESTROYED for every channel)."""

from __future__ import annotations

from collections.abc import Callable

from forwarder.update import Connection, Update


class MonitorSource:
    def __init__(self, channels: list[str], on_update: Callable[[Update], None],
                 on_connection: Callable[[str, Connection], None]) -> None:
        self._channels = channels
        self._on_update = on_update
        self._on_connection = on_connection
        self._context = None
        self._subscriptions: list[object] = []

    def start(self) -> None:
        """Subscribe to every channel without blocking; a missing PV is found when it appears."""
        if not self._channels:
            return
        for channel in self._channels:
            self._on_connection(channel, Connection.NEVER_CONNECTED)
        self._subscribe()

    def _subscribe(self) -> None:
        raise NotImplementedError

    def _end_subscription(self, subscription: object) -> None:
        raise NotImplementedError

    def _close_context(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for sub in self._subscriptions:
            self._end_subscription(sub)
        if self._context is not None:
            for channel in self._channels:
                self._on_connection(channel, Connection.DESTROYED)
            self._close_context()
