"""Channel Access monitors through caproto's threading client."""

from __future__ import annotations

import logging
from collections import deque

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


def _parse_linearly() -> None:
    """caproto's VirtualCircuit.recv parses a received chunk by slicing a bytearray per
    command, copying the rest each time: quadratic in the chunk. Under load (thousands of
    updates per second) the selector reads megabytes at once, parsing falls behind, more piles
    up, and memory grows without bound. This recv walks the same chunk through a memoryview
    (no copies); each chunk gets its own buffer, so commands may keep views into it."""
    from caproto import _circuit
    from caproto._commands import read_from_bytestream
    from caproto._utils import NEED_DATA

    circuit = _circuit.VirtualCircuit
    if getattr(circuit.recv, "linear", False):
        return
    original = circuit.recv

    def recv(self: object, *buffers: object) -> tuple[deque, int]:
        if not any(_circuit._safe_len(b) for b in buffers):
            return original(self, *buffers)  # the disconnection path, unchanged
        chunk = bytearray(self._data)
        for b in buffers:
            chunk += b
        view = memoryview(chunk)
        commands: deque = deque()
        needed = 0
        while True:
            view, command, needed = read_from_bytestream(view, self.their_role)
            if command is NEED_DATA:
                break
            commands.append(command)
        self._data = bytearray(view)
        return commands, needed

    recv.linear = True
    circuit.recv = recv


# updates waiting for the callback thread, per IOC connection, before new ones are dropped
MAX_BACKLOG = 20_000


class _BoundedCallbacks:
    """Stands in for caproto's per-circuit callback executor, whose queue has no bound: past
    saturation the selector thread would queue updates until memory runs out. Monitor updates
    beyond the bound are dropped and counted; everything else (connection changes) passes."""

    def __init__(self, executor: object, source: CaSource) -> None:
        self._executor = executor
        self._source = source

    def submit(self, fn: object, *args: object, **kwargs: object) -> object:
        if (getattr(fn, "__func__", None) is CaSource._callback
                and self._executor._work_queue.qsize() >= MAX_BACKLOG):
            self._source.dropped += 1
            return None
        return self._executor.submit(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._executor, name)


class CaSource(MonitorSource):
    protocol = "ca"

    def _make_context(self) -> object:
        from caproto.threading.client import Context

        _parse_linearly()
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
            manager = pv.circuit_manager
            if manager is not None and not isinstance(manager.user_callback_executor,
                                                      _BoundedCallbacks):
                manager.user_callback_executor = _BoundedCallbacks(
                    manager.user_callback_executor, self)
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
