"""Channel Access monitors through caproto's threading client."""

from __future__ import annotations

import logging

import numpy as np

from forwarder.source import MonitorSource
from forwarder.update import EPICS_EPOCH_OFFSET_S, Connection, Update

log = logging.getLogger(__name__)


def update_from_ca(channel: str, response: object) -> Update:
    """caproto EventAddResponse (DBR_TIME_*) -> Update."""
    meta = response.metadata
    stamp = meta.stamp
    ts_ns = ((stamp.secondsSinceEpoch + EPICS_EPOCH_OFFSET_S) * 1_000_000_000
             + stamp.nanoSeconds)
    data = response.data
    if isinstance(data, list | tuple):  # DBR_STRING arrives as a list of bytes
        strings = [d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data]
        value: object = strings[0] if len(strings) == 1 else np.array(strings)
    else:
        arr = np.asarray(data)
        value = arr[0] if arr.size == 1 else arr
    return Update(channel, value, ts_ns, int(meta.severity), int(meta.status), "", "ca")


class CaSource(MonitorSource):
    protocol = "ca"

    def _make_context(self) -> object:
        from caproto.threading.client import Context

        return Context()

    def _subscribe(self, channels: list[str]) -> dict[str, object]:
        pvs = self._context.get_pvs(*channels, connection_state_callback=self._pv_connection)
        subscriptions = {}
        for pv in pvs:
            sub = pv.subscribe(data_type="time")
            sub.add_callback(self._callback)
            subscriptions[pv.name] = sub
        return subscriptions

    def _pv_connection(self, pv: object, state: str) -> None:
        if state == "connected":
            self._connection(pv.name, Connection.CONNECTED)
        elif state == "disconnected":
            self._connection(pv.name, Connection.DISCONNECTED)

    def _callback(self, sub: object, response: object) -> None:
        try:
            self._on_update(update_from_ca(sub.pv.name, response))
        except Exception:  # a callback that raises would be silently dropped by caproto
            log.exception("CA update of %s could not be forwarded", sub.pv.name)

    def _end_subscription(self, subscription: object) -> None:
        subscription.clear()

    def _close_context(self) -> None:
        self._context.disconnect()
