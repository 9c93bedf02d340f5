"""Forwarded streams: one PV over one protocol, serialised with one schema, to one topic.

The forwarder subscribes to them and the run-control IOC writes one NXlog per stream into the
run's nexus_structure, so both read the same list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PROTOCOLS = ("ca", "pva")
SCHEMAS = ("f142", "f144", "tdct", "se00")


class StreamConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Stream:
    """Identity of a forwarded stream (hashable, so one is never subscribed twice)."""

    channel: str
    protocol: str
    schema: str
    topic: str

    def __post_init__(self) -> None:
        if not self.channel:
            raise StreamConfigError("a stream needs a channel (PV name)")
        if self.protocol not in PROTOCOLS:
            raise StreamConfigError(f"{self.channel}: protocol {self.protocol!r} is not one of "
                                    f"{PROTOCOLS}")
        if self.schema not in SCHEMAS:
            raise StreamConfigError(f"{self.channel}: schema {self.schema!r} is not one of "
                                    f"{SCHEMAS}")
        if not self.topic:
            raise StreamConfigError(f"{self.channel}: no topic")


@dataclass(frozen=True)
class LogStream:
    """A stream plus how it appears in the file."""

    stream: Stream
    name: str
    units: str = ""
    # re-send the last value every few seconds (Kafka timestamp = now), so a file always finds
    # the value a PV had when the run began, however long ago it last changed
    periodic: bool = True
    # how the file writer stores the values (kafka-to-nexus's dtype and array_size): a file
    # written SWMR has its datasets made before the first value arrives
    dtype: str = "double"
    array_size: int = 0  # 0: a scalar


_KNOWN_KEYS = {"channel", "protocol", "schema", "topic", "name", "units", "periodic", "dtype",
               "array_size"}
_DTYPE_NAMES = {"string", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                "uint64", "float", "float32", "double", "float64"}


def log_name(channel: str) -> str:
    """NeXus-safe group name from a PV name: the part after the last ':'."""
    last = channel.rstrip(":").split(":")[-1]
    return re.sub(r"[^A-Za-z0-9_]", "_", last) or "log"


def parse_streams(doc: object, default_topic: str, macros: dict[str, str]) -> list[LogStream]:
    """Streams from the JSON config ({"streams": [...]}); $(MACRO) in channels is expanded."""
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise StreamConfigError('stream config must be an object with a "streams" list')
    result: list[LogStream] = []
    seen: set[Stream] = set()
    for i, entry in enumerate(doc["streams"]):
        if not isinstance(entry, dict):
            raise StreamConfigError(f"streams[{i}] is not an object")
        unknown = set(entry) - _KNOWN_KEYS
        if unknown:
            raise StreamConfigError(f"streams[{i}] has unknown keys {sorted(unknown)}")
        channel = expand_macros(str(entry.get("channel", "")), macros)
        stream = Stream(channel, entry.get("protocol", "ca"), entry.get("schema", "f142"),
                        expand_macros(entry.get("topic", default_topic), macros))
        if stream in seen:
            continue
        seen.add(stream)
        periodic = entry.get("periodic", True)
        if not isinstance(periodic, bool | int):
            raise StreamConfigError(f"streams[{i}]: periodic must be true or false")
        dtype = entry.get("dtype", "double")
        if dtype not in _DTYPE_NAMES:
            raise StreamConfigError(f"streams[{i}]: dtype {dtype!r} is not one of "
                                    f"{sorted(_DTYPE_NAMES)}")
        array_size = entry.get("array_size", 0)
        if not isinstance(array_size, int) or array_size < 0:
            raise StreamConfigError(f"streams[{i}]: array_size must be a whole number >= 0")
        result.append(LogStream(stream, entry.get("name") or log_name(channel),
                                entry.get("units", ""), bool(periodic), dtype, array_size))
    names = [s.name for s in result]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise StreamConfigError(f"several streams share the log name(s) {sorted(dupes)}; "
                                'give them distinct "name"s')
    return result


def load_streams(path: Path, default_topic: str, macros: dict[str, str]) -> list[LogStream]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StreamConfigError(f"cannot read stream config {path}: {exc}") from exc
    return parse_streams(doc, default_topic, macros)


def expand_macros(text: str, macros: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in macros:
            raise StreamConfigError(f"macro $({key}) is not defined")
        return macros[key]

    return re.sub(r"\$\((\w+)\)", sub, text)


# DAE PVs the forwarder sends to <INST>_runLog (ISIS run log), and the file's runlog group reads
RUNLOG_PVS: dict[str, tuple[str, str]] = {  # PV: (units, dtype)
    "GOODFRAMES": ("", "int64"), "RAWFRAMES": ("", "int64"), "TOTALCOUNTS": ("", "int64"),
    "COUNTRATE": ("counts/s", "double"), "RUNDURATION": ("s", "double"),
    "GOODUAH": ("uAh", "double"), "RUNSTATE": ("", "int32"),
}


def runlog_streams(prefix: str, topic: str) -> list[LogStream]:
    return [LogStream(Stream(f"{prefix}DAE:{pv}", "ca", "f142", topic), pv.lower(), units,
                      periodic=True, dtype=dtype)
            for pv, (units, dtype) in RUNLOG_PVS.items()]
