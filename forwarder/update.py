"""A PV update as both EPICS protocols deliver it, before any schema."""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

# seconds between the POSIX epoch and the EPICS epoch (1990-01-01)
EPICS_EPOCH_OFFSET_S = 631_152_000


class Update(NamedTuple):
    """Immutable; a NamedTuple rather than a frozen dataclass because one is made per update
    and a frozen dataclass takes three times as long to build."""

    channel: str
    value: Any  # numpy scalar, 1-D numpy array, or str
    timestamp_ns: int  # EPICS timestamp, POSIX epoch
    severity: int = 0  # EPICS severity: 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID
    status: int = 0  # EPICS alarm status
    message: str = ""
    protocol: str = "ca"  # which monitor delivered it: a PV may be forwarded over both


def units_text(raw: str) -> str | None:
    """EPICS units (EGU, display.units) as un00 carries them: a PV without units has an empty
    string there, which neither protocol tells apart from none."""
    return raw or None


class Connection(Enum):
    NEVER_CONNECTED = "never_connected"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    DESTROYED = "destroyed"
