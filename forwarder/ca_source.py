"""Channel Access monitors through caproto's threading client.

Each PV has two subscriptions: its values (DBR_TIME_*), and its units (DBR_CTRL_*, one
element, DBE_PROPERTY: the server sends it once at subscribing, then only when a property such
as EGU changes), so the value path carries no metadata and costs nothing more."""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
import threading
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from forwarder.source import MonitorSource
from forwarder.update import EPICS_EPOCH_OFFSET_S, Connection, Update, units_text

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


def _units_offsets() -> dict[int, int]:
    """DBR_CTRL_* types with units, decoded on the fast path too: where the units (8 bytes,
    NUL-padded) start. The others (enum, string) have none and take caproto's path."""
    from caproto import ChannelType
    from caproto._dbr import DBR_TYPES

    return {int(t): DBR_TYPES[t].units.offset
            for t in (ChannelType.CTRL_DOUBLE, ChannelType.CTRL_FLOAT, ChannelType.CTRL_LONG,
                      ChannelType.CTRL_INT, ChannelType.CTRL_CHAR)}


UNITS_SIZE = 8  # MAX_UNITS_SIZE of db_access.h


def _decode_units(raw: bytes) -> str | None:
    return units_text(raw.split(b"\0", 1)[0].decode("latin-1"))


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
    # DBR_CTRL_* layouts of the fast path, set with the context (caproto imported late)
    _units_offsets: Mapping[int, int] = MappingProxyType({})

    def _make_context(self) -> object:
        from caproto.threading.client import Context

        _parse_linearly()
        self._time_types = _time_types()
        self._units_offsets = _units_offsets()
        return Context()

    def _subscribe(self, channels: list[str]) -> dict[str, object]:
        from caproto import SubscriptionType

        pvs = self._context.get_pvs(*channels, connection_state_callback=self._pv_connection)
        subscriptions = {}
        for pv in pvs:
            # one element: the metadata is all it is for, and a waveform's would be the whole
            # array at every reconnection
            units = pv.subscribe(data_type="control", data_count=1,
                                 mask=SubscriptionType.DBE_PROPERTY)
            units.add_callback(self._units_callback)
            # values and alarms (libca's default): caproto's default adds DBE_PROPERTY, which
            # repeated the value, unchanged, whenever a property such as EGU changed
            sub = pv.subscribe(data_type="time",
                               mask=SubscriptionType.DBE_VALUE | SubscriptionType.DBE_ALARM)
            sub.add_callback(self._callback)
            subscriptions[pv.name] = (sub, units)
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
            # the units subscription's (DBR_CTRL_*) here too, so that a changed EGU keeps its
            # place among the values: caproto's path reports it after this chunk's values
            units_at = self._units_offsets.get(data_type)
            if units_at is None or sub is None or len(payload) < units_at + UNITS_SIZE:
                return False
            units = _decode_units(bytes(payload[units_at:units_at + UNITS_SIZE]))
            manager.user_callback_executor.submit(self._units, sub.pv.name, units)
            return True
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

    def _units_callback(self, sub: object, response: object) -> None:
        """caproto's path: DBR_CTRL_ENUM and DBR_CTRL_STRING, which carry no units."""
        raw = getattr(response.metadata, "units", b"")
        self._units(sub.pv.name, _decode_units(raw if isinstance(raw, bytes) else b""))

    def _units(self, channel: str, units: str | None) -> None:
        try:
            self._on_units(channel, units, self.protocol, False)
        except Exception:
            log.exception("CA units of %s could not be forwarded", channel)

    def _end_subscription(self, subscription: object) -> None:
        for sub in subscription:
            sub.clear()

    def _close_context(self) -> None:
        self._context.disconnect()


# updates the callback thread may drop past its bound (connection changes are never dropped)
_MONITOR_CALLBACKS = (CaSource._callback, CaSource._forward)
