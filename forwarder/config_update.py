"""Configuration commands of the ESS forwarder: fc00 (ADD, REMOVE, REMOVEALL, REPLACE, with
per-stream periodic) and the older rf5k (no REPLACE, no periodic), decoded and applied to the
set of streams they own.

REMOVE takes `*` and `?` wildcards in channel and topic (fnmatch, case-sensitive); an empty
channel, topic or schema in a REMOVE matches any, as in the ESS forwarder. One bad stream in
a command is reported and skipped; the rest of the command still applies.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from enum import Enum

from streaming_data_types.forwarder_config_update_fc00 import (
    StreamInfo as Fc00Stream,
)
from streaming_data_types.forwarder_config_update_fc00 import (
    deserialise_fc00,
    serialise_fc00,
)
from streaming_data_types.forwarder_config_update_rf5k import deserialise_rf5k

from datastream.schemas import MalformedMessage, check_root, schema_id
from datastream.streams import Stream, StreamConfigError

log = logging.getLogger(__name__)

# fc00/rf5k Protocol enum: PVA 0, CA 1, FAKE 2
_PROTOCOL_NAMES = {0: "pva", 1: "ca"}
_PROTOCOL_NUMBERS = {name: number for number, name in _PROTOCOL_NAMES.items()}


class Action(Enum):
    # numbering of the fc00/rf5k UpdateType enum
    ADD = 0
    REMOVE = 1
    REMOVEALL = 2
    REPLACE = 3


@dataclass(frozen=True)
class Pattern:
    """What a REMOVE names: channel and topic may hold wildcards; schema "" matches any."""

    channel: str
    topic: str
    schema: str = ""

    def matches(self, stream: Stream) -> bool:
        return (fnmatch.fnmatchcase(stream.channel, self.channel)
                and fnmatch.fnmatchcase(stream.topic, self.topic)
                and (not self.schema or self.schema == stream.schema))


@dataclass(frozen=True)
class ConfigCommand:
    action: Action
    # ADD / REPLACE: stream -> periodic
    streams: dict[Stream, bool] = field(default_factory=dict)
    patterns: tuple[Pattern, ...] = ()
    # streams of the message that could not be used, each with the reason
    rejected: tuple[str, ...] = ()


def decode_command(buffer: bytes) -> ConfigCommand:
    """An fc00 or rf5k message -> ConfigCommand; MalformedMessage if it is neither or corrupt."""
    kind = schema_id(buffer)
    check_root(buffer)
    try:
        if kind == "fc00":
            update = deserialise_fc00(buffer)
        elif kind == "rf5k":
            update = deserialise_rf5k(buffer)
        else:
            raise MalformedMessage(f"config message has schema {kind!r}, not fc00 or rf5k")
        action = Action(update.config_change)
    except MalformedMessage:
        raise
    except ValueError as exc:
        raise MalformedMessage(f"{kind}: unknown config change: {exc}") from exc
    except Exception as exc:  # a corrupt buffer fails anywhere inside the generated code
        raise MalformedMessage(f"corrupt {kind} message: {exc}") from exc
    streams: dict[Stream, bool] = {}
    patterns: list[Pattern] = []
    rejected: list[str] = []
    for info in update.streams:
        periodic = bool(getattr(info, "periodic", 0))
        if action is Action.REMOVE:
            # as the ESS forwarder: an empty channel, topic or schema matches any
            patterns.append(Pattern(info.channel or "*", info.topic or "*", info.schema))
            continue
        try:
            protocol = _PROTOCOL_NAMES.get(info.protocol)
            if protocol is None:
                raise StreamConfigError(f"{info.channel}: protocol {info.protocol} is not "
                                        "PVA (0) or CA (1)")
            streams[Stream(info.channel, protocol, info.schema, info.topic)] = periodic
        except StreamConfigError as exc:
            rejected.append(str(exc))
    return ConfigCommand(action, streams, tuple(patterns), tuple(rejected))


def apply_command(current: dict[Stream, bool], command: ConfigCommand) -> dict[Stream, bool]:
    """The stream set (stream -> periodic) after the command; identical streams stay single."""
    if command.action is Action.REMOVEALL:
        return {}
    if command.action is Action.REPLACE:
        return dict(command.streams)
    if command.action is Action.ADD:
        return current | command.streams
    return {s: p for s, p in current.items()
            if not any(pattern.matches(s) for pattern in command.patterns)}


def encode_configuration(streams: dict[Stream, bool]) -> bytes:
    """The whole set as one fc00 REPLACE: what the storage topic keeps, so a restarted
    forwarder (or the ESS one) resumes exactly this set."""
    return serialise_fc00(Action.REPLACE.value, [
        Fc00Stream(s.channel, s.schema, s.topic, _PROTOCOL_NUMBERS[s.protocol], int(periodic))
        for s, periodic in streams.items()
    ])
