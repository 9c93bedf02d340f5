"""Writer modules: one per schema family, each filling one NeXus group from its stream.

WRITERS maps the nexus_structure module name to its writer class, and DECODERS maps the
schema id on the wire to the function that decodes it; a module accepts the schema ids in its
``accepts``."""

from __future__ import annotations

from filewriter.modules.base import Decoded, WriterModule
from filewriter.modules.ev44 import EventWriter, decode_ev44
from filewriter.modules.log import LogWriter, decode_al00, decode_ep01, decode_f142, decode_f144

WRITERS: dict[str, type[WriterModule]] = {
    "ev44": EventWriter,
    "f142": LogWriter,
    "f144": LogWriter,
}

DECODERS = {
    "ev44": decode_ev44,
    "f142": decode_f142,
    "f144": decode_f144,
    "al00": decode_al00,
    "ep01": decode_ep01,
}

__all__ = ["DECODERS", "WRITERS", "Decoded", "WriterModule"]
