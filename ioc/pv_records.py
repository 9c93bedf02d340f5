"""The kinds of caproto PV the run-control IOC serves, each as the EPICS record ISISDAE and IBEX
use for it (bo, bi, longin, ai, stringin, char waveforms), so a client that checks a PV's type
(ophyd-async does at connect) or reads its fields (.STAT, .SEVR, .NORD, .DISP) finds what an
EPICS IOC serves; and the writes every group shares."""

from __future__ import annotations

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import pvproperty

# a command: put 1 (or the string "1")
BO = {"dtype": ChannelType.ENUM, "enum_strings": ("0", "1"), "record": "bo", "value": "0"}
# ISISDAE's yes/no flags (STATETRANS, SIM_MODE, TITLE:DISPLAY): ophyd-async maps a two-state
# enum to bool
NO_YES = {"dtype": ChannelType.ENUM, "enum_strings": ("No", "Yes"), "record": "bi",
          "value": "No"}


def text(doc: str, length: int = 256, **kwargs: object) -> pvproperty:
    """A CHAR waveform holding text, as ISISDAE's TITLE and friends are."""
    return pvproperty(value="", dtype=ChannelType.CHAR, max_length=length,
                      string_encoding="utf-8", record="waveform", doc=doc, **kwargs)


def string(name: str, doc: str = "", **kwargs: object) -> pvproperty:
    """A read-only DBR_STRING PV (40 characters), as stringin records are."""
    return pvproperty(name=name, value="", dtype=ChannelType.STRING, read_only=True, doc=doc,
                      record="stringin", **kwargs)


def longin(name: str, doc: str = "", units: str = "", **kwargs: object) -> pvproperty:
    return pvproperty(name=name, value=0, read_only=True, record="longin", units=units,
                      doc=doc, **kwargs)


def ai(name: str, doc: str = "", units: str = "", **kwargs: object) -> pvproperty:
    return pvproperty(name=name, value=0.0, read_only=True, record="ai", precision=3,
                      units=units, doc=doc, **kwargs)


def is_one(value: object) -> bool:
    return str(value).strip() in ("1", "On", "True")


async def write_changed(pairs) -> None:
    """Write each (pvproperty, value) whose value differs: monitors fire on change only."""
    for prop, value in pairs:
        if prop.value != value:
            await prop.write(value)


async def set_alarm(prop, ok: bool) -> None:
    """A put's outcome on its record, as asyn device support sets it: NO_ALARM, or
    STAT=WRITE with SEVR=INVALID (genie_python reads `.STAT`/`.SEVR` after a put)."""
    if ok:
        if prop.alarm.severity != AlarmSeverity.NO_ALARM:
            await prop.alarm.write(status=AlarmStatus.NO_ALARM,
                                   severity=AlarmSeverity.NO_ALARM)
    else:
        await prop.alarm.write(status=AlarmStatus.WRITE, severity=AlarmSeverity.INVALID_ALARM)
