"""Time units and ISO 8601 offsets as NeXus files spell them, to integer nanoseconds.

A file's times are only meaningful with their units: ISIS writes event_time_offset in µs
and event_time_zero in seconds after an `offset`, kafka-to-nexus both in ns. Nothing is
guessed: a missing or unknown unit is an error for the caller to word."""

from __future__ import annotations

import datetime as dt
import re

import h5py
import numpy as np

from replay.errors import ReplayError

_NS_PER_UNIT: dict[str, int] = {}
for _names, _ns in ((("ns", "nanosecond", "nanoseconds", "nsec"), 1),
                    (("us", "µs", "μs", "microsecond", "microseconds", "usec",
                      "microsec"), 1_000),
                    (("ms", "millisecond", "milliseconds", "msec"), 1_000_000),
                    (("s", "second", "seconds", "sec"), 1_000_000_000)):
    for _name in _names:
        _NS_PER_UNIT[_name] = _ns


def attr_text(obj: h5py.HLObject, name: str) -> str | None:
    """A string attribute however h5py hands it back (str, bytes, a 1-element array)."""
    if name not in obj.attrs:
        return None
    value = obj.attrs[name]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def ns_per_unit(units: str | None, where: str) -> int:
    """Nanoseconds in one `units`; ReplayError naming `where` if missing or unknown."""
    if units is None or not units.strip():
        raise ReplayError(f"{where} has no units attribute: cannot tell seconds, µs and ns "
                          "apart")
    factor = _NS_PER_UNIT.get(units.strip()) or _NS_PER_UNIT.get(units.strip().lower())
    if factor is None:
        raise ReplayError(f"{where}: unknown time units {units!r}")
    return factor


_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})[.,](\d+)")


def iso_to_ns(text: str, where: str) -> int:
    """ns since the epoch of an ISO 8601 time. One without a zone is taken as UTC: ISIS
    writes local times without one, and all replay needs is differences between times
    read alike (the run is shifted to now anyway)."""
    text = text.strip()
    fraction_ns = 0
    # datetime keeps microseconds; files may carry nanoseconds, so the fraction is apart
    match = _FRACTION.search(text)
    if match:
        digits = match.group(2)
        fraction_ns = int(digits[:9].ljust(9, "0"))
        text = text[:match.start(2) - 1] + text[match.end(2):]
    try:
        when = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError as exc:
        raise ReplayError(f"{where}: {text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int((when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    return seconds * 1_000_000_000 + fraction_ns


def to_ns(values: np.ndarray, factor: int, where: str) -> np.ndarray:
    """int64 ns of times in units of `factor` ns: integers exactly, floats rounded to the
    nearest ns (in float64, whatever the file's float width)."""
    if values.dtype.kind in "iu":
        if values.dtype == np.uint64 and len(values) and int(values.max()) >= 2**63:
            raise ReplayError(f"{where}: times beyond the int64 range")
        out = values.astype(np.int64)
        return out * factor if factor != 1 else out
    if values.dtype.kind != "f":
        raise ReplayError(f"{where}: times of type {values.dtype} are not numbers")
    as_float = values.astype(np.float64)
    if not np.isfinite(as_float).all():
        bad = int(np.flatnonzero(~np.isfinite(as_float))[0])
        raise ReplayError(f"{where}: non-finite time {as_float[bad]} at row {bad}")
    return np.rint(as_float * factor).astype(np.int64)
