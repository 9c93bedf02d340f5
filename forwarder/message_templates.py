"""f142/f144 messages made by patching a cached buffer instead of rebuilding it.

For one source and one numeric value type (and, for arrays, one length) every message has the
same FlatBuffer layout: only the value, timestamp and alarm bytes differ. The template is
built once through the normal serialiser with non-default sentinels (so no field is left out
as a default) and its field positions are read back with the flatbuffers table reader; later
updates copy it and overwrite those bytes. Strings and anything unusual take the normal path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import flatbuffers
import numpy as np
from flatbuffers.table import Table
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.schemas.f142 import serialise_f142, severity_to_f142

# vtable offsets (4 + 2 * field index) of the fields patched
_F142_VALUE, _F142_TIMESTAMP, _F142_STATUS, _F142_SEVERITY = 8, 10, 12, 14
_F144_TIMESTAMP, _F144_VALUE = 6, 10
_INNER_VALUE = 4

_TIMESTAMP = struct.Struct("<Q")
_TIMESTAMP_SIGNED = struct.Struct("<q")
_U16 = struct.Struct("<H")


@dataclass(frozen=True)
class _Layout:
    template: bytes
    value_pos: int
    value_dtype: np.dtype  # little-endian
    length: int  # 0 for a scalar
    timestamp_pos: int
    status_pos: int = -1
    severity_pos: int = -1


def _field_pos(table: Table, vtable_offset: int) -> int:
    o = table.Offset(vtable_offset)
    if not o:
        raise ValueError("field missing from template")
    return table.Pos + o


def _value_pos(buf: bytes, root: Table, union_vt: int, is_array: bool) -> int:
    union_pos = root.Indirect(_field_pos(root, union_vt))
    inner = Table(bytearray(buf), union_pos)
    o = inner.Offset(_INNER_VALUE)
    return inner.Vector(o) if is_array else inner.Pos + o


def _sentinel(value: np.ndarray) -> np.ndarray:
    return np.ones(value.shape, dtype=value.dtype)


def _numeric(value: object) -> np.ndarray | None:
    if not isinstance(value, np.ndarray | np.generic):
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.ndim > 1:
        return None
    return arr


def _root(buf: bytes) -> Table:
    return Table(bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))


def f142_layout(channel: str, value: np.ndarray) -> _Layout:
    buf = serialise_f142(_sentinel(value), channel, 1, 1, 1)
    root = _root(buf)
    return _Layout(buf, _value_pos(buf, root, _F142_VALUE, value.ndim == 1),
                   value.dtype.newbyteorder("<"), value.size if value.ndim else 0,
                   _field_pos(root, _F142_TIMESTAMP), _field_pos(root, _F142_STATUS),
                   _field_pos(root, _F142_SEVERITY))


def f144_layout(channel: str, value: np.ndarray) -> _Layout:
    buf = serialise_f144(channel, _sentinel(value), 1)
    root = _root(buf)
    return _Layout(buf, _value_pos(buf, root, _F144_VALUE, value.ndim == 1),
                   value.dtype.newbyteorder("<"), value.size if value.ndim else 0,
                   _field_pos(root, _F144_TIMESTAMP))


class TemplateCache:
    """Per (schema, channel): the layout of the last value type seen. Not thread-safe on its
    own: each subscription's updates arrive on one thread at a time."""

    def __init__(self) -> None:
        self._layouts: dict[tuple[str, str], _Layout] = {}

    def render(self, schema: str, channel: str, value: object, timestamp_ns: int,
               status: int = 0, severity: int = 0) -> bytes | None:
        """The message, or None when this value has no template (text, odd types)."""
        arr = _numeric(value)
        if arr is None:
            return None
        key = (schema, channel)
        layout = self._layouts.get(key)
        length = arr.size if arr.ndim else 0
        if (layout is None or layout.length != length
                or layout.value_dtype != arr.dtype.newbyteorder("<")):
            try:
                layout = (f142_layout if schema == "f142" else f144_layout)(channel, arr)
            except (TypeError, ValueError, NotImplementedError):
                return None
            self._layouts[key] = layout
        buf = bytearray(layout.template)
        raw = arr.astype(layout.value_dtype, copy=False).tobytes()
        buf[layout.value_pos:layout.value_pos + len(raw)] = raw
        if layout.status_pos >= 0:
            _TIMESTAMP.pack_into(buf, layout.timestamp_pos, timestamp_ns)
            _U16.pack_into(buf, layout.status_pos, status)
            _U16.pack_into(buf, layout.severity_pos, severity_to_f142(severity))
        else:
            _TIMESTAMP_SIGNED.pack_into(buf, layout.timestamp_pos, timestamp_ns)
        return bytes(buf)
