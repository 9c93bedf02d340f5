"""Writer modules: one per schema family, each filling one NeXus group from its stream.

WRITERS maps the nexus_structure module name to its writer class, and DECODERS maps the
schema id on the wire to the function that decodes it; a module accepts the schema ids in its
``accepts``."""

from __future__ import annotations

from filewriter.modules.arrays import (
    DataArrayWriter,
    HistogramWriter,
    decode_da00,
    decode_hs00,
    decode_hs01,
)
from filewriter.modules.base import Decoded, WriterModule
from filewriter.modules.ev44 import EventWriter, decode_events, decode_pulse
from filewriter.modules.isis_frames import FrameLogWriter, TotalsWriter
from filewriter.modules.isis_histogram import IsisHistogramWriter
from filewriter.modules.isis_log import IsisLogWriter
from filewriter.modules.log import (
    LogWriter,
    decode_al00,
    decode_ep01,
    decode_f142,
    decode_f144,
    decode_un00,
)
from filewriter.modules.samples import SampleWriter, TimestampWriter, decode_se00, decode_tdct

WRITERS: dict[str, type[WriterModule]] = {
    "ev44": EventWriter,
    "ev42": EventWriter,
    "f142": LogWriter,
    "f144": LogWriter,
    "se00": SampleWriter,
    "tdct": TimestampWriter,
    "hs00": HistogramWriter,
    "hs01": HistogramWriter,
    "da00": DataArrayWriter,
    # ISIS's run-level data, from the events topic's pu00 and ev44
    "isis_framelog": FrameLogWriter,
    "isis_totals": TotalsWriter,
    "isis_histogram": IsisHistogramWriter,
    # an f142 / f144 log as Mantid loads it (ISIS's runlog and selog), beside f144's layout
    "isis_log": IsisLogWriter,
}

DECODERS = {
    "ev44": decode_events,
    "ev42": decode_events,
    "f142": decode_f142,
    "f144": decode_f144,
    "al00": decode_al00,
    "ep01": decode_ep01,
    "se00": decode_se00,
    "tdct": decode_tdct,
    "hs00": decode_hs00,
    "hs01": decode_hs01,
    "da00": decode_da00,
    "pu00": decode_pulse,
    # ISIS's units of a log's source: for the log modules (others do not accept it)
    "un00": decode_un00,
}

__all__ = ["DECODERS", "WRITERS", "Decoded", "WriterModule"]
