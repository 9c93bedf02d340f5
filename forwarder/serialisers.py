"""Update -> FlatBuffers payload, one entry per schema; plus al00, ep01 and un00.

Each serialiser takes the update and the stream's message counter (tdct and se00 carry one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.array_1d_se00 import serialise_se00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.logdata_f144 import serialise_f144
from streaming_data_types.timestamps_tdct import serialise_tdct

from datastream.schemas.f142 import serialise_f142
from datastream.schemas.un00 import serialise_un00
from forwarder.message_templates import TemplateCache
from forwarder.update import Connection, Update

# numeric f142/f144 are patched copies of a cached message per PV (forwarder.message_templates)
_TEMPLATES = TemplateCache()


class CannotSerialise(ValueError):
    pass


def _is_text(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, np.ndarray) and value.dtype.kind in "US")


def _f142(update: Update, _counter: int) -> bytes:
    patched = _TEMPLATES.render("f142", update.channel, update.value, update.timestamp_ns,
                                update.status, update.severity)
    return patched or serialise_f142(update.value, update.channel, update.timestamp_ns,
                          update.status, update.severity)


def _f144(update: Update, _counter: int) -> bytes:
    if _is_text(update.value):
        raise CannotSerialise(f"{update.channel}: f144 cannot carry strings; use f142")
    patched = _TEMPLATES.render("f144", update.channel, update.value, update.timestamp_ns)
    return patched or serialise_f144(update.channel, update.value, update.timestamp_ns)


def _tdct(update: Update, counter: int) -> bytes:
    """A PV holding timestamps (ns, e.g. chopper top-dead-centre times)."""
    if _is_text(update.value):
        raise CannotSerialise(f"{update.channel}: tdct carries timestamps, not text")
    times = np.atleast_1d(np.asarray(update.value))
    if times.dtype.kind not in "iuf" or (times < 0).any():
        raise CannotSerialise(f"{update.channel}: tdct needs non-negative numeric timestamps")
    return serialise_tdct(update.channel, times.astype(np.uint64), counter)


# se00 carries these value types (its ValueUnion); others are widened to the nearest
_SE00_TYPES = {"i": {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64},
               "u": {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64},
               "f": {4: np.float32, 8: np.float64}}


def _se00(update: Update, counter: int) -> bytes:
    """A waveform as one se00 array sample, stamped with the EPICS time."""
    if _is_text(update.value):
        raise CannotSerialise(f"{update.channel}: se00 carries numbers, not text")
    values = np.atleast_1d(np.asarray(update.value))
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    sizes = _SE00_TYPES.get(values.dtype.kind)
    if sizes is None:
        raise CannotSerialise(f"{update.channel}: se00 cannot carry {values.dtype}")
    values = values.astype(sizes.get(values.dtype.itemsize, np.float64), copy=False)
    return serialise_se00(update.channel, 0, update.timestamp_ns, 0, counter, values)


SERIALISERS: dict[str, Callable[[Update, int], bytes]] = {
    "f142": _f142, "f144": _f144, "tdct": _tdct, "se00": _se00}

_SEVERITY = {0: Severity.OK, 1: Severity.MINOR, 2: Severity.MAJOR, 3: Severity.INVALID}
_CONNECTION = {
    Connection.NEVER_CONNECTED: ConnectionInfo.NEVER_CONNECTED,
    Connection.CONNECTED: ConnectionInfo.CONNECTED,
    Connection.DISCONNECTED: ConnectionInfo.DISCONNECTED,
    Connection.DESTROYED: ConnectionInfo.DESTROYED,
}


def alarm_message(update: Update) -> bytes:
    return serialise_al00(update.channel, update.timestamp_ns,
                          _SEVERITY.get(update.severity, Severity.INVALID), update.message)


def units_message(channel: str, timestamp_ns: int, units: str | None) -> bytes:
    """un00, ISIS's units schema: None is a PV without units."""
    return serialise_un00(channel, timestamp_ns, units)


def connection_message(channel: str, state: Connection, timestamp_ns: int,
                       service_id: str) -> bytes:
    return serialise_ep01(timestamp_ns, _CONNECTION[state], channel, service_id)
