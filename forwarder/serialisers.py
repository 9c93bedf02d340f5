"""Update -> FlatBuffers payload, one entry per schema; plus al00 and ep01."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.schemas.f142 import serialise_f142
from forwarder.update import Connection, Update


class CannotSerialise(ValueError):
    pass


def _f142(update: Update) -> bytes:
    return serialise_f142(update.value, update.channel, update.timestamp_ns,
                          update.status, update.severity)


def _f144(update: Update) -> bytes:
    value = update.value
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.dtype.kind in "US"):
        raise CannotSerialise(f"{update.channel}: f144 cannot carry strings; use f142")
    return serialise_f144(update.channel, value, update.timestamp_ns)


SERIALISERS: dict[str, Callable[[Update], bytes]] = {"f142": _f142, "f144": _f144}

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


def connection_message(channel: str, state: Connection, timestamp_ns: int,
                       service_id: str) -> bytes:
    return serialise_ep01(timestamp_ns, _CONNECTION[state], channel, service_id)
