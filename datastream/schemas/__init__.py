"""Thin layer over ``streaming_data_types``: schema identification and the codecs it lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class MalformedMessage(ValueError):
    """A Kafka message that is not a valid FlatBuffer of the schema it claims."""


def schema_id(buffer: bytes) -> str:
    """The 4-character file identifier of a FlatBuffers message (bytes 4..8)."""
    if len(buffer) < 8:
        raise MalformedMessage(f"message of {len(buffer)} bytes is too short for a schema id")
    try:
        return bytes(buffer[4:8]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedMessage("schema id is not ASCII") from exc


def check_root(buffer: bytes) -> None:
    """The root table offset must point past the 8-byte header and inside the buffer; the
    generated readers do not check it and read garbage as valid defaults."""
    root = int.from_bytes(bytes(buffer[0:4]), "little")
    if root < 8 or root + 4 > len(buffer):
        raise MalformedMessage(f"root offset {root} lies outside the {len(buffer)}-byte message")


def deserialised(schema: str, deserialise: Callable[[bytes], T], payload: bytes) -> T:
    """The package's deserialiser, any failure of it reported as a malformed message."""
    try:
        return deserialise(payload)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"corrupt {schema} message: {exc}") from exc


def check_strings_inside(table: object, slots: tuple[int, ...], payload: bytes,
                         schema: str) -> None:
    """MalformedMessage unless each string of a generated table (`table`: its `_tab`; `slots`:
    the strings' vtable slots) ends inside the message: the generated readers slice a string
    cut short by a truncation without a word (a source "TE:T" cut to "TE" would label
    another source's data)."""
    import flatbuffers  # the runtime of the generated code

    for slot in slots:
        o = table.Offset(slot)  # type: ignore[attr-defined]
        if o:
            start = table.Indirect(o + table.Pos)  # type: ignore[attr-defined]
            length = flatbuffers.encode.Get(flatbuffers.packer.uoffset, payload, start)
            if start + 4 + length >= len(payload):  # the bytes and their NUL terminator
                raise MalformedMessage(f"{schema}: a string of {length} bytes runs past the "
                                       f"{len(payload)}-byte message")
