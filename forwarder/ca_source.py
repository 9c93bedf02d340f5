"""Channel Access monitors through caproto's threading client."""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
import threading
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


# a CA message header (command, payload size, data type, data count, parameters 1 and 2) and
# the start of every DBR_TIME_* payload (status, severity, seconds, nanoseconds), big-endian
_HEADER = struct.Struct(">HHHHII")
_TIME = struct.Struct(">hhII")
_EVENT_ADD = 1
_EXTENDED = 0xFFFF


def _time_types() -> dict[int, tuple[int, np.dtype]]:
    """DBR_TIME_* types decoded on the fast path: where the value starts (after the metadata
    and its padding, as caproto lays them out) and its dtype (caproto's). Strings take the
    general path."""
    from caproto import ChannelType
    from caproto._dbr import DBR_TYPES, native_type
    from caproto._numpy_backend import type_map

    return {int(t): (ctypes.sizeof(DBR_TYPES[t]), type_map[native_type(t)])
            for t in (ChannelType.TIME_DOUBLE, ChannelType.TIME_FLOAT, ChannelType.TIME_LONG,
                      ChannelType.TIME_INT, ChannelType.TIME_ENUM, ChannelType.TIME_CHAR)}


def _parse_linearly() -> None:
    """caproto's VirtualCircuit.recv parses a received chunk by slicing a bytearray per
    command, copying the rest each time: quadratic in the chunk. Under load (thousands of
    updates per second) the selector reads megabytes at once, parsing falls behind, more piles
    up, and memory grows without bound. This recv walks the same chunk through a memoryview
    (no copies); each chunk gets its own buffer, so commands may keep views into it.

    A circuit with a `fast_events` handler gives it each monitor update (EVENT_ADD with a
    payload) first; what the handler takes skips caproto's command objects, state machine and
    callback plumbing, which were most of the forwarder's time per update."""
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
        fast = getattr(self, "fast_events", None)
        while True:
            if fast is not None and len(view) >= _HEADER.size:
                command_id, size, data_type, count, _, subscription = _HEADER.unpack_from(view)
                end = _HEADER.size + size
                if (command_id == _EVENT_ADD and 0 < size < _EXTENDED and len(view) >= end
                        and fast(subscription, data_type, count, view[_HEADER.size:end])):
                    view = view[end:]
                    continue
            view, command, needed = read_from_bytestream(view, self.their_role)
            if command is NEED_DATA:
                break
            commands.append(command)
        self._data = bytearray(view)
        return commands, needed

    recv.linear = True
    circuit.recv = recv


# updates waiting for the callback thread, per IOC connection, before new ones are dropped:
# about 2 s at 50,000 updates/s, some 25 MB. While a forwarder connects to 5,000 PVs of one IOC
# its callback thread is busy with the connections, and the backlog passed 20,000.
MAX_BACKLOG = 100_000


class _SerialCallbacks:
    """Replaces caproto's per-circuit callback executor, a one-thread ThreadPoolExecutor.
    That one's queue has no bound, so past saturation the selector thread queued updates until
    memory ran out; and every submit and every finished item take its idle semaphore, which at
    20,000 updates/s was a quarter of the forwarder's time in lock hand-offs between the two
    threads. Here callbacks run in order on one thread from a deque; monitor updates beyond
    the bound are dropped and counted; everything else (connection changes) always passes."""

    def __init__(self, source: CaSource, name: str) -> None:
        self._source = source
        self._queue: deque = deque()
        self._wake = threading.Event()
        self._idle = False
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: object, *args: object, **kwargs: object) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new callbacks after shutdown")  # as caproto expects
        if (getattr(fn, "__func__", None) in _MONITOR_CALLBACKS
                and len(self._queue) >= MAX_BACKLOG):
            self._source.dropped += 1
            return
        self._queue.append((fn, args, kwargs))
        if self._idle:  # the worker sleeps only once it found the queue empty
            self._wake.set()

    def shutdown(self, wait: bool = True, **_: object) -> None:
        self._shutdown = True
        self._wake.set()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        queue = self._queue
        while True:
            try:
                fn, args, kwargs = queue.popleft()
            except IndexError:
                if self._shutdown:
                    return
                self._wake.clear()
                self._idle = True
                if not queue:  # checked again after idle is set: no wake-up is missed
                    self._wake.wait(1.0)
                self._idle = False
                continue
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("CA callback %r failed", fn)


class CaSource(MonitorSource):
    protocol = "ca"

    def _make_context(self) -> object:
        from caproto.threading.client import Context

        _parse_linearly()
        self._time_types = _time_types()
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
                                                      _SerialCallbacks):
                previous = manager.user_callback_executor
                manager.user_callback_executor = _SerialCallbacks(
                    self, f"ca-callbacks-{manager.circuit.address}")
                previous.shutdown(wait=False)  # it finishes what it holds, then its thread ends
                manager.circuit.fast_events = functools.partial(self._fast_event, manager)
            self._connection(pv.name, Connection.CONNECTED)
        elif state == "disconnected":
            self._connection(pv.name, Connection.DISCONNECTED)

    def _fast_event(self, manager: object, subscription_id: int, data_type: int, count: int,
                    payload: memoryview) -> bool:
        """In the selector thread: a DBR_TIME_* monitor update of one of this source's
        subscriptions becomes an Update for the callback thread. False: not one of those
        (a string, a cancelled subscription, …), so caproto handles it as usual."""
        layout = self._time_types.get(data_type)
        sub = manager.subscriptions.get(subscription_id)
        if layout is None or sub is None:
            return False
        offset, dtype = layout
        if len(payload) < offset + count * dtype.itemsize:
            return False  # caproto reports the malformed message
        status, severity, seconds, nanoseconds = _TIME.unpack_from(payload)
        values = np.frombuffer(payload, dtype, count, offset)
        update = Update(sub.pv.name, values[0] if count == 1 else values,
                        (seconds + EPICS_EPOCH_OFFSET_S) * 1_000_000_000 + nanoseconds,
                        severity, status, "", "ca")
        manager.user_callback_executor.submit(self._forward, update)
        return True

    def _forward(self, update: Update) -> None:
        try:
            self._on_update(update)
        except Exception:
            log.exception("CA update of %s could not be forwarded", update.channel)

    def _callback(self, sub: object, response: object) -> None:
        try:
            self._on_update(update_from_ca(sub.pv.name, response))
        except Exception:  # a callback that raises would be silently dropped by caproto
            log.exception("CA update of %s could not be forwarded", sub.pv.name)

    def _end_subscription(self, subscription: object) -> None:
        subscription.clear()

    def _close_context(self) -> None:
        self._context.disconnect()


# updates the callback thread may drop past its bound (connection changes are never dropped)
_MONITOR_CALLBACKS = (CaSource._callback, CaSource._forward)
