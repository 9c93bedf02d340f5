"""PV Access monitors through p4p (NTScalar, NTScalarArray, NTEnum as its index)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from forwarder.source import MonitorSource
from forwarder.update import Connection, Update

log = logging.getLogger(__name__)


def update_from_pva(channel: str, value: object) -> Update:
    """A p4p Value (nt=False) of a normative type -> Update."""
    v = value["value"]
    if hasattr(v, "keys") and "index" in v.keys():  # noqa: SIM118 (a p4p Value, no __contains__)
        data: object = np.int32(v["index"])  # NTEnum
    elif isinstance(v, np.ndarray | str):
        data = v
    elif isinstance(v, bool):
        data = np.uint8(v)
    elif isinstance(v, int):
        data = np.int64(v)
    elif isinstance(v, float):
        data = np.float64(v)
    else:
        data = np.asarray(v)
    ts_ns = (int(value["timeStamp.secondsPastEpoch"]) * 1_000_000_000
             + int(value["timeStamp.nanoseconds"]))
    return Update(channel, data, ts_ns, int(value["alarm.severity"]),
                  int(value["alarm.status"]), str(value["alarm.message"]), "pva")


# only what is forwarded: a full NTScalar also carries display, control and valueAlarm, and
# copying those into every update costs most of the forwarder's CPU
_REQUEST = "field(value,alarm,timeStamp)"


class PvaSource(MonitorSource):
    protocol = "pva"

    def _make_context(self) -> object:
        from p4p.client.thread import Context
        from p4p.util import ThreadedWorkQueue

        # one callback thread of our own: p4p's shared default spreads monitors over four,
        # which then spent their time queueing for the GIL and the forwarder's lock
        self._callbacks = ThreadedWorkQueue(name="pva-callbacks", maxsize=0,
                                            daemon=True).start()
        return Context("pva", nt=False)

    def _subscribe(self, channels: list[str]) -> dict[str, object]:
        return {channel: self._context.monitor(channel, self._make_callback(channel),
                                               request=_REQUEST, notify_disconnect=True,
                                               queue=self._callbacks)
                for channel in channels}

    def _make_callback(self, channel: str) -> Callable[[object], None]:
        from p4p.client.thread import Disconnected

        connected = False

        def callback(value: object) -> None:
            nonlocal connected
            if isinstance(value, Disconnected):
                connected = False
                self._connection(channel, Connection.DISCONNECTED)
                return
            if isinstance(value, Exception):  # Cancelled, RemoteError
                log.warning("%s: %s", channel, value)
                return
            if not connected:  # p4p has no connect event: the first value is it
                connected = True
                self._connection(channel, Connection.CONNECTED)
            try:
                self._on_update(update_from_pva(channel, value))
            except Exception:
                log.exception("PVA update of %s could not be forwarded", channel)

        return callback

    def _end_subscription(self, subscription: object) -> None:
        subscription.close()

    def _close_context(self) -> None:
        self._context.close()
        self._callbacks.stop()
