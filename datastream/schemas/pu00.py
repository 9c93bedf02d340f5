"""pu00, ISIS's pulse metadata: one per frame, before the frame's ev44 messages, with the
frame's period (from 0, ISIS's ADR 007), its proton charge (µAh in this frame) and the
veto bit mask. Read and written through flatc's generated code (datastream.schemas.isis)."""

from __future__ import annotations

import math
from typing import NamedTuple

import flatbuffers

from datastream.schemas import MalformedMessage, check_root, check_strings_inside, schema_id
from datastream.schemas.isis.generated import Pu00Message as _pu00

FILE_IDENTIFIER = b"pu00"
UINT32_MAX = 2**32 - 1


class PulseMetadata(NamedTuple):
    source_name: str
    message_id: int
    reference_time: int  # ns since the epoch: the frame's, as its ev44 messages carry it
    vetos: int | None  # bit mask; None when the DAE does not say
    period_number: int | None  # from 0
    proton_charge: float | None  # µAh in this frame


def serialise_pu00(source_name: str, message_id: int, reference_time: int,
                   vetos: int | None = None, period_number: int | None = None,
                   proton_charge: float | None = None) -> bytes:
    builder = flatbuffers.Builder(96)
    source = builder.CreateString(source_name)
    _pu00.Start(builder)
    _pu00.AddSourceName(builder, source)
    _pu00.AddMessageId(builder, message_id)
    _pu00.AddReferenceTime(builder, reference_time)
    # the optional scalars (`= null` in the schema) are left out when unknown
    if vetos is not None:
        _pu00.AddVetos(builder, vetos)
    if period_number is not None:
        _pu00.AddPeriodNumber(builder, period_number)
    if proton_charge is not None:
        _pu00.AddProtonCharge(builder, proton_charge)
    builder.Finish(_pu00.End(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def deserialise_pu00(payload: bytes) -> PulseMetadata:
    """MalformedMessage, with the reason, for anything a reader could not use: a wrong
    identifier, a broken buffer, no source name, a negative time, a non-finite or negative
    charge."""
    if schema_id(payload) != "pu00":
        raise MalformedMessage(f"not a pu00 message: {schema_id(payload)}")
    check_root(payload)
    try:
        msg = _pu00.Pu00Message.GetRootAs(payload, 0)
        check_strings_inside(msg._tab, (4,), payload, "pu00")  # source_name
        source = msg.SourceName()
        pulse = PulseMetadata(source.decode() if source is not None else "", msg.MessageId(),
                              msg.ReferenceTime(), msg.Vetos(), msg.PeriodNumber(),
                              msg.ProtonCharge())
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"corrupt pu00 message: {exc}") from exc
    if source is None:
        raise MalformedMessage("pu00 without its (required) source_name")
    if pulse.reference_time < 0:
        raise MalformedMessage(f"pu00 reference time {pulse.reference_time} ns is before 1970")
    charge = pulse.proton_charge
    if charge is not None and (not math.isfinite(charge) or charge < 0):
        raise MalformedMessage(f"pu00 proton charge {charge} µAh is not a charge")
    return pulse
