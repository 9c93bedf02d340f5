"""Event messages, ev44 or the older ev42 (Mantid's, and what existing clients still send),
read into one shape with ev44's field names, an ev42 being one pulse. The file writer, the
live view, its just-bin-it histograms and run control's recount read events through this.

Every message is checked here, once for all of them: the binning kernels index memory by
these arrays without bounds checks, so a message whose vectors disagree (100,000 times of
flight and one pixel id) must never get past this reader."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from streaming_data_types.eventdata_ev42 import deserialise_ev42
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.schemas import MalformedMessage, deserialised, schema_id
from datastream.schemas.pu00 import PulseMetadata, deserialise_pu00

EVENT_SCHEMAS = frozenset({"ev44", "ev42"})
# what an events topic carries: the events, and ISIS's pulse metadata before each frame's
STREAM_SCHEMAS = EVENT_SCHEMAS | {"pu00"}


class Events(NamedTuple):
    source_name: str
    message_id: int
    reference_time: np.ndarray  # pulse times, ns since the epoch
    reference_time_index: np.ndarray  # each pulse's first event
    time_of_flight: np.ndarray
    pixel_id: np.ndarray
    # ISIS's period (from 0): an ev42's is84 period_number; ev44 has none (ISIS sends it in
    # the frame's pu00: datastream.frames), so 0
    period: int = 0
    # an ev42's is84 proton charge (µAh in its one frame); ev44 has none (pu00 has)
    proton_charge: float = 0.0


def _vector(value: object, dtype: type) -> np.ndarray:
    """A FlatBuffers vector as a 1-d array: the generated readers give 0, not an empty
    array, for a vector the message leaves out."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise MalformedMessage(f"an event vector of {value.ndim} dimensions")
        return value
    if isinstance(value, int) and value == 0:
        return np.zeros(0, dtype)
    raise MalformedMessage(f"an event vector that is not an array: {type(value).__name__}")


def _charge(value: object) -> float:
    """An is84 proton charge; a non-finite or negative one counts as none."""
    charge = float(value) if isinstance(value, int | float) else 0.0
    return charge if math.isfinite(charge) and charge >= 0 else 0.0


def check_events(reference_time: np.ndarray, reference_time_index: np.ndarray,
                 time_of_flight: np.ndarray, pixel_id: np.ndarray) -> None:
    """MalformedMessage, with the reason, unless the arrays describe events the readers can
    index: one pixel id per time of flight, one first event per pulse, those ascending from 0
    and within the events. Cheap: O(pulses) beyond comparing lengths."""
    n = len(time_of_flight)
    if len(pixel_id) != n:
        raise MalformedMessage(f"{n} times of flight but {len(pixel_id)} pixel ids")
    if len(reference_time_index) != len(reference_time):
        raise MalformedMessage(f"{len(reference_time)} pulse times but "
                               f"{len(reference_time_index)} pulse indices")
    if len(reference_time_index) == 0:
        if n:
            raise MalformedMessage(f"{n} events and no pulse to hold them")
        return
    index = np.asarray(reference_time_index)
    if int(index[0]) != 0 and n:
        raise MalformedMessage(f"the first pulse starts at event {int(index[0])}, not 0")
    if int(index.min()) < 0 or int(index.max()) > n:
        raise MalformedMessage(f"a pulse index lies outside the {n} events")
    if len(index) > 1 and bool(np.any(np.diff(index) < 0)):
        raise MalformedMessage("the pulse indices go backwards")


def read_events(payload: bytes) -> Events | None:
    """None for a message of another schema; MalformedMessage if it cannot be read or its
    arrays disagree (check_events)."""
    sid = schema_id(payload)
    if sid == "ev44":
        ev = deserialised("ev44", deserialise_ev44, payload)
        events = Events(ev.source_name, ev.message_id,
                        _vector(ev.reference_time, np.int64).astype(np.int64, copy=False),
                        _vector(ev.reference_time_index, np.int32).astype(np.int64),
                        _vector(ev.time_of_flight, np.int32), _vector(ev.pixel_id, np.int32))
    elif sid == "ev42":
        ev = deserialised("ev42", deserialise_ev42, payload)
        isis = ev.specific_data or {}
        if not 0 <= ev.pulse_time < 2**63:  # a uint64 in ev42, ns in an int64 everywhere else
            raise MalformedMessage(f"pulse time {ev.pulse_time} ns is past 2262")
        events = Events(ev.source_name, ev.message_id, np.array([ev.pulse_time], np.int64),
                        np.zeros(1, np.int64), _vector(ev.time_of_flight, np.uint32),
                        _vector(ev.detector_id, np.uint32), int(isis.get("period_number", 0)),
                        _charge(isis.get("proton_charge", 0.0)))
    else:
        return None
    check_events(events.reference_time, events.reference_time_index, events.time_of_flight,
                 events.pixel_id)
    return events


def read_stream(payload: bytes) -> Events | PulseMetadata | None:
    """A message of an events topic: its events, a frame's pu00, or None for another schema;
    MalformedMessage as read_events and deserialise_pu00 say."""
    if schema_id(payload) == "pu00":
        return deserialise_pu00(payload)
    return read_events(payload)
