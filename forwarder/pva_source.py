"""PV Access monitors through p4p (NTScalar, NTScalarArray, NTEnum as its index), and their
`display.units`.

Built on p4p's raw client: pvxs calls a handler on its network thread whenever a monitor's
queue becomes non-empty, and the handler forwards what the queue holds there and then.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading

import numpy as np

from forwarder.source import MonitorSource
from forwarder.update import Connection, Update, units_text

log = logging.getLogger(__name__)

# only what is forwarded: a full NTScalar also carries display, control and valueAlarm, and
# copying those into every update costs most of the forwarder's CPU. Of display, the units
# (for un00): a short string, and a client Value keeps a field the server did not resend.
_REQUEST = "field(value,alarm,timeStamp,display.units)"
_UNITS = "display.units"


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


_thread_state = threading.local()


def keep_thread_state() -> None:
    """Called from a thread Python did not start (pvxs's network thread), keep that thread's
    Python thread state for good. p4p enters Python there through PyGILState_Ensure, which
    makes a thread state and frees it again on the way out: each time, CPython maps and unmaps
    the state's frame stack, and every unmap interrupts the process's other threads to flush
    their TLBs. That was two thirds of the forwarder's time under PVA load. One more Ensure,
    never released, keeps the state (and the threading.local that marks it) alive."""
    if not getattr(_thread_state, "kept", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_state.kept = True


class _Monitor:
    __slots__ = ("channel", "connected", "ended", "missed", "subscription", "units")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.connected = False
        self.ended = False
        self.missed = False  # pvxs called before monitor() had returned the subscription
        self.subscription: object | None = None
        # display.units as last reported; None: the type has none (NTEnum, a plain structure)
        self.units: str | None = None


class PvaSource(MonitorSource):
    protocol = "pva"

    def _make_context(self) -> object:
        from p4p._p4p import ClientMonitor
        from p4p.client.raw import Context, Disconnected, Finished

        self._disconnected, self._finished = Disconnected, Finished
        # the compiled pop under p4p.client.raw's: that wrapper's checks, type lookups and
        # debug logging were a tenth of the forwarder's time, for an unwrap that nt=False skips
        self._pop = ClientMonitor.pop
        self._early = threading.Lock()
        return Context("pva", nt=False, useenv=True)

    def _subscribe(self, channels: list[str]) -> dict[str, object]:
        monitors = {}
        for channel in channels:
            monitor = _Monitor(channel)
            subscription = self._context.monitor(
                channel, functools.partial(self._on_pvxs_thread, monitor), request=_REQUEST)
            with self._early:
                monitor.subscription = subscription
                missed = monitor.missed
            if missed:  # pvxs will not call again until a pop finds the queue empty
                self._on_queued(monitor)
            monitors[channel] = monitor
        return monitors

    def _on_pvxs_thread(self, monitor: _Monitor) -> None:
        """The handler pvxs calls on its network thread, which holds the GIL here. Handing
        each update to a thread of our own instead made the two pass the GIL back and forth
        at every pop, and the hand-offs cost more than the forwarding."""
        keep_thread_state()
        self._on_queued(monitor)

    def _on_queued(self, monitor: _Monitor) -> None:
        """Forward everything the monitor holds. pvxs calls the handler again only after a
        pop found the queue empty."""
        subscription, pop = monitor.subscription, self._pop
        if subscription is None:
            with self._early:
                subscription = monitor.subscription
                monitor.missed = subscription is None
            if subscription is None:
                return
        while not monitor.ended:
            try:
                item = pop(subscription)
            except Exception:
                if not monitor.ended:  # else closed under us by remove()
                    log.warning("%s: monitor failed", monitor.channel, exc_info=True)
                return
            if item is None:
                return
            self._deliver(monitor, item)

    def _deliver(self, monitor: _Monitor, item: object) -> None:
        channel = monitor.channel
        if isinstance(item, self._disconnected):
            if monitor.connected:
                monitor.connected = False
                self._connection(channel, Connection.DISCONNECTED)
            return
        if isinstance(item, self._finished):
            monitor.ended = True
            return
        if isinstance(item, Exception):  # RemoteError, Cancelled
            log.warning("%s: %s", channel, item)
            return
        if not monitor.connected:  # p4p has no connect event: the first value is it
            monitor.connected = True
            self._connection(channel, Connection.CONNECTED)
            try:
                monitor.units = item[_UNITS]
            except KeyError:
                monitor.units = None
            self._report_units(monitor, True)
        elif monitor.units is not None and item[_UNITS] != monitor.units:
            # a property change: a string compare per update finds it (changed() costs more)
            monitor.units = item[_UNITS]
            # QSRV sends a changed EGU alone, with the value unchanged: not a new value
            value_follows = item.changed("value", "alarm", "timeStamp")
            self._report_units(monitor, value_follows)
            if not value_follows:
                return
        try:
            self._on_update(update_from_pva(channel, item))
        except Exception:
            log.exception("PVA update of %s could not be forwarded", channel)

    def _report_units(self, monitor: _Monitor, update_follows: bool) -> None:
        try:
            self._on_units(monitor.channel, units_text(monitor.units or ""), self.protocol,
                           update_follows)
        except Exception:
            log.exception("PVA units of %s could not be forwarded", monitor.channel)

    def _end_subscription(self, monitor: _Monitor) -> None:
        monitor.ended = True
        monitor.subscription.close()

    def _close_context(self) -> None:
        self._context.close()
