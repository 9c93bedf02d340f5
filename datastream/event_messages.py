"""Event messages, ev44 or the older ev42 (Mantid's, and what existing clients still send),
read into one shape with ev44's field names, an ev42 being one pulse. The file writer, the
live view, its just-bin-it histograms and run control's recount read events through this."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from streaming_data_types.eventdata_ev42 import deserialise_ev42
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.schemas import deserialised, schema_id

EVENT_SCHEMAS = frozenset({"ev44", "ev42"})


class Events(NamedTuple):
    source_name: str
    message_id: int
    reference_time: np.ndarray  # pulse times, ns since the epoch
    reference_time_index: np.ndarray  # each pulse's first event
    time_of_flight: np.ndarray
    pixel_id: np.ndarray
    # ISIS's period (from 0): an ev42's is84 period_number; ev44 has none (ISIS sends it in
    # pu00, which ess-streaming-data-types does not provide), so 0
    period: int = 0


def read_events(payload: bytes) -> Events | None:
    """None for a message of another schema; MalformedMessage if it cannot be read."""
    sid = schema_id(payload)
    if sid == "ev44":
        ev = deserialised("ev44", deserialise_ev44, payload)
        return Events(ev.source_name, ev.message_id, np.asarray(ev.reference_time, np.int64),
                      np.asarray(ev.reference_time_index, np.int64), ev.time_of_flight,
                      ev.pixel_id)
    if sid == "ev42":
        ev = deserialised("ev42", deserialise_ev42, payload)
        isis = ev.specific_data or {}
        return Events(ev.source_name, ev.message_id, np.array([ev.pulse_time], np.int64),
                      np.zeros(1, np.int64), ev.time_of_flight, ev.detector_id,
                      int(isis.get("period_number", 0)))
    return None
