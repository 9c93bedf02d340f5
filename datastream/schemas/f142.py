"""f142 (LogData) codec on the generated ``fbschemas`` code of ess-streaming-data-types.

The package's own ``logdata_f142`` module uses ``np.unicode_`` and so fails under NumPy 2;
this module builds the same buffers from the same generated tables.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from streaming_data_types.fbschemas.logdata_f142 import LogData as _LogData
from streaming_data_types.fbschemas.logdata_f142.AlarmSeverity import AlarmSeverity
from streaming_data_types.fbschemas.logdata_f142.Value import Value

from datastream.schemas import MalformedMessage, schema_id

FILE_IDENTIFIER = b"f142"

# numpy dtype -> f142 union member name (scalar; the array member is "Array" + name)
_NUMERIC = {
    np.dtype(np.int8): "Byte",
    np.dtype(np.uint8): "UByte",
    np.dtype(np.int16): "Short",
    np.dtype(np.uint16): "UShort",
    np.dtype(np.int32): "Int",
    np.dtype(np.uint32): "UInt",
    np.dtype(np.int64): "Long",
    np.dtype(np.uint64): "ULong",
    np.dtype(np.float32): "Float",
    np.dtype(np.float64): "Double",
}
_NUMPY_OF = {name: dtype for dtype, name in _NUMERIC.items()}

# EPICS severity (0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID) -> f142 AlarmSeverity; the f142
# AlarmStatus enum already uses EPICS alarm-status numbering.
_SEVERITY_TO_F142 = {
    0: AlarmSeverity.NO_ALARM,
    1: AlarmSeverity.MINOR,
    2: AlarmSeverity.MAJOR,
    3: AlarmSeverity.INVALID,
}
_F142_TO_SEVERITY = {v: k for k, v in _SEVERITY_TO_F142.items()}


def severity_to_f142(severity: int) -> int:
    return _SEVERITY_TO_F142.get(int(severity), AlarmSeverity.INVALID)


def _table(name: str) -> Any:
    return importlib.import_module(f"streaming_data_types.fbschemas.logdata_f142.{name}")


_TABLES = {name: _table(name) for name in [*_NUMPY_OF, "String"]} | {
    "Array" + name: _table("Array" + name) for name in [*_NUMPY_OF, "String"]
}


@dataclass(frozen=True)
class LogData:
    source_name: str
    value: Any  # numpy scalar/array, str, or numpy array of str
    timestamp_ns: int
    alarm_status: int | None = None  # EPICS alarm status numbering
    alarm_severity: int | None = None  # EPICS severity numbering


def _add_union_value(builder: flatbuffers.Builder, value: Any) -> tuple[int, int]:
    """Build the value table; returns (union type, offset)."""
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        return _build_table(builder, "String", builder.CreateString(text))
    arr = np.asarray(value)
    if arr.dtype.kind in "USO":
        if arr.ndim == 0:
            return _build_table(builder, "String", builder.CreateString(str(arr.item())))
        offsets = [builder.CreateString(str(s)) for s in arr.ravel()]
        _TABLES["ArrayString"].ArrayStringStartValueVector(builder, len(offsets))
        for off in reversed(offsets):
            builder.PrependUOffsetTRelative(off)
        return _build_table(builder, "ArrayString", builder.EndVector())
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    name = _NUMERIC.get(arr.dtype.newbyteorder("="))
    if name is None:
        raise TypeError(f"f142 cannot carry values of dtype {arr.dtype}")
    if arr.ndim == 0:
        return _build_table(builder, name, arr.item(), scalar=True)
    if arr.ndim != 1:
        raise TypeError("f142 carries scalars and 1-D arrays only")
    vec = builder.CreateNumpyVector(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")))
    return _build_table(builder, "Array" + name, vec)


def _build_table(builder: flatbuffers.Builder, name: str, value: Any,
                 scalar: bool = False) -> tuple[int, int]:
    mod = _TABLES[name]
    getattr(mod, f"{name}Start")(builder)
    getattr(mod, f"{name}AddValue")(builder, value)
    return getattr(Value, name), getattr(mod, f"{name}End")(builder)


def serialise_f142(
    value: Any,
    source_name: str,
    timestamp_ns: int,
    alarm_status: int | None = None,
    alarm_severity: int | None = None,
) -> bytes:
    builder = flatbuffers.Builder(256)
    builder.ForceDefaults(True)
    source = builder.CreateString(source_name)
    value_type, value_offset = _add_union_value(builder, value)
    _LogData.LogDataStart(builder)
    _LogData.LogDataAddSourceName(builder, source)
    _LogData.LogDataAddValueType(builder, value_type)
    _LogData.LogDataAddValue(builder, value_offset)
    _LogData.LogDataAddTimestamp(builder, int(timestamp_ns))
    if alarm_status is not None:
        _LogData.LogDataAddStatus(builder, int(alarm_status))
        if alarm_severity is not None:
            _LogData.LogDataAddSeverity(builder, severity_to_f142(alarm_severity))
    builder.Finish(_LogData.LogDataEnd(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def deserialise_f142(buffer: bytes) -> LogData:
    if schema_id(buffer) != "f142":
        raise MalformedMessage(f"expected f142, got {schema_id(buffer)!r}")
    try:
        root = _LogData.LogData.GetRootAsLogData(buffer, 0)
        type_name = _UNION_NAMES.get(root.ValueType())
        if type_name is None:
            raise MalformedMessage(f"f142 value type {root.ValueType()} is not known")
        union = root.Value()
        table = getattr(_TABLES[type_name], type_name)()
        table.Init(union.Bytes, union.Pos)
        value = _read_value(table, type_name)
        source = root.SourceName()
        return LogData(
            source_name=source.decode() if source else "",
            value=value,
            timestamp_ns=root.Timestamp(),
            alarm_status=root.Status(),
            alarm_severity=_F142_TO_SEVERITY.get(root.Severity()),
        )
    except MalformedMessage:
        raise
    except Exception as exc:  # a corrupt buffer fails anywhere inside the generated code
        raise MalformedMessage(f"corrupt f142 message: {exc}") from exc


_UNION_NAMES = {getattr(Value, n): n for n in _TABLES}


def _read_value(table: Any, type_name: str) -> Any:
    if type_name == "String":
        return table.Value().decode()
    if type_name == "ArrayString":
        return np.array([table.Value(i).decode() for i in range(table.ValueLength())])
    if type_name.startswith("Array"):
        return table.ValueAsNumpy()
    return _NUMPY_OF[type_name].type(table.Value())
