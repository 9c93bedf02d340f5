"""Channel Access element counts as EPICS base's server (rsrv) gives them, for caproto servers.

caproto answers a read with the value's current length: a char waveform holding "abc" in a
256-element record goes out as 3 elements, an empty DBR_CHAR field (`.DISP`) as none. EPICS
base's libca clients (CaChannel in genie_python, pyepics) ask for the native count and use the
buffer they asked for, so they read whatever follows the 3 bytes as text, and a `.DISP` of no
elements as "put disabled". rsrv serves a char waveform at its full length, zero padded, and
a scalar field as one element: `serve_native_counts` makes a caproto pvdb do the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from caproto import ChannelByte, ChannelChar, ChannelData, ChannelType, native_type

_PADDED: dict[type, type] = {}


def _pad(values: Any, count: int) -> Any:
    """`values` (bytes, a numpy array or a list, as caproto converts them) zero padded to
    `count` elements."""
    n = len(values)
    if n >= count:
        return values
    if isinstance(values, bytes | bytearray):
        return bytes(values) + b"\0" * (count - n)
    if isinstance(values, np.ndarray):
        return np.concatenate([values, np.zeros(count - n, values.dtype)])
    return [*values, *([b""] if values and isinstance(values[0], bytes) else [0]) * (count - n)]


def _padded_class(cls: type) -> type:
    """`cls` whose reads carry the native count: a char waveform's max_length, a scalar one."""
    padded = _PADDED.get(cls)
    if padded is None:
        async def _read(self: Any, data_type: ChannelType) -> tuple[Any, Any]:
            metadata, values = await cls._read(self, data_type)
            if data_type in (ChannelType.STSACK_STRING, ChannelType.CLASS_NAME):
                return metadata, values
            if isinstance(values, bytes | bytearray | np.ndarray | list | tuple):
                # a char waveform read as chars: all of it; read as a DBR_STRING, or a
                # scalar: one element
                wire = native_type(data_type)
                count = (self.max_length if wire is ChannelType.CHAR
                         and self.data_type is ChannelType.CHAR else 1)
                values = _pad(values, count)
            return metadata, values

        padded = type(f"NativeCount{cls.__name__}", (cls,), {"_read": _read})
        _PADDED[cls] = padded
    return padded


def _needs_padding(channel: ChannelData) -> bool:
    # char waveforms (text) always; other arrays keep caproto's dynamic length (their .NORD
    # says how many elements hold data, and clients that ask for NELM get what rsrv sends)
    return isinstance(channel, ChannelChar | ChannelByte) or channel.max_length == 1


def _channels(pvdb: Mapping[str, ChannelData]) -> Iterable[ChannelData]:
    for channel in pvdb.values():
        yield channel
        fields = getattr(channel, "fields", None)
        if fields:
            yield from fields.values()


def serve_native_counts(pvdb: Mapping[str, ChannelData]) -> None:
    """Make every char waveform of `pvdb`, and every scalar (record fields included), answer
    with its native element count."""
    for channel in _channels(pvdb):
        if _needs_padding(channel) and not type(channel).__name__.startswith("NativeCount"):
            channel.__class__ = _padded_class(type(channel))
