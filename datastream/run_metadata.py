"""The pl72's metadata JSON, as run control fills it: `{"title": str, "users": [str],
"rb_number": str, "tcb": {"tof_min_ns": float, "tof_max_ns": float, "channels": int,
"logarithmic": bool}, "periods": int}` (the DAE's number of periods). Read here once for
every consumer of run starts (the file writer bins its histograms with the run's TCB, as the
live view does)."""

from __future__ import annotations

import json

from datastream.time_channels import TimeChannels


def parse_metadata(metadata: str | None) -> dict[str, object]:
    """The metadata JSON as a dict; {} if it is none or not a JSON object (or nested past
    the parser's recursion limit: RecursionError is no ValueError)."""
    try:
        parsed = json.loads(metadata or "{}")
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def time_channels(metadata: dict[str, object]) -> TimeChannels | None:
    """The run's time channels from the metadata's "tcb"; None if absent or malformed."""
    tcb = metadata.get("tcb")
    if not isinstance(tcb, dict):
        return None
    try:
        low, high = tcb["tof_min_ns"], tcb["tof_max_ns"]
        channels, logarithmic = tcb["channels"], tcb.get("logarithmic", False)
        numbers = (low, high, channels)
        if (any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers)
                or channels != int(channels) or not isinstance(logarithmic, bool)):
            return None
        return TimeChannels(float(low), float(high), int(channels), logarithmic)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def periods(metadata: dict[str, object]) -> int | None:
    """The DAE's number of periods for the run; None if absent or not a count (1..10000)."""
    number = metadata.get("periods")
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 10_000:
        return None
    return number
