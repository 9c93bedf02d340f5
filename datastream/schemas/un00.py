"""un00, ISIS's units message: a PV's engineering units, sent at connect and whenever they
change, on the topic of its values. Through flatc's generated code (datastream.schemas.isis)."""

from __future__ import annotations

from typing import NamedTuple

import flatbuffers

from datastream.schemas import MalformedMessage, check_root, check_strings_inside, schema_id
from datastream.schemas.isis.generated import Units as _un00

FILE_IDENTIFIER = b"un00"
# the vtable slots of its strings (source_name, units)
STRING_SLOTS = (4, 8)
MAX_UNITS_CHARS = 256  # EPICS's EGU holds 16; a PVA display.units has no bound


class Units(NamedTuple):
    source_name: str
    timestamp_ns: int
    units: str | None  # None: the PV has no units (no .EGU)


def serialise_un00(source_name: str, timestamp_ns: int, units: str | None) -> bytes:
    builder = flatbuffers.Builder(64)
    source = builder.CreateString(source_name)
    text = builder.CreateString(units) if units is not None else None
    _un00.Start(builder)
    _un00.AddSourceName(builder, source)
    _un00.AddTimestamp(builder, timestamp_ns)
    if text is not None:
        _un00.AddUnits(builder, text)
    builder.Finish(_un00.End(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def deserialise_un00(payload: bytes) -> Units:
    """MalformedMessage, with the reason, for a message a reader could not use: a wrong
    identifier, a broken buffer or string, no source name, units that are not printable
    text of at most MAX_UNITS_CHARS (HDF5 refuses a NUL in an attribute, and a huge one
    would swell every flush's metadata)."""
    if schema_id(payload) != "un00":
        raise MalformedMessage(f"not a un00 message: {schema_id(payload)}")
    check_root(payload)
    try:
        msg = _un00.Units.GetRootAs(payload, 0)
        check_strings_inside(msg._tab, STRING_SLOTS, payload, "un00")
        source, units = msg.SourceName(), msg.Units()
        result = Units(source.decode() if source is not None else "", msg.Timestamp(),
                       units.decode() if units is not None else None)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"corrupt un00 message: {exc}") from exc
    if source is None:
        raise MalformedMessage("un00 without its (required) source_name")
    text = result.units
    if text is not None and (len(text) > MAX_UNITS_CHARS or not text.isprintable()):
        raise MalformedMessage(f"un00: units {text[:40]!r} are not printable text of at "
                               f"most {MAX_UNITS_CHARS} characters")
    return result
