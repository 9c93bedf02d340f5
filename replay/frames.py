"""Each detector pulse's frame as the file's framelog tells it: the period (period_log,
from 1 in files, from 0 in pu00: ISIS's ADR 007), the proton charge (µAh in the frame) and
the veto mask, for the pulse's pu00.

The writer writes one framelog row per event_time_zero entry, in order, and Mantid matches
them by position: so a framelog as long as the pulse list is taken row by row. Any other
is matched by time (ISIS files whose framelog counts frames the events do not hold)."""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from replay.errors import ReplayError
from replay.units import attr_text, iso_to_ns, ns_per_unit, to_ns

# a framelog time this close to a pulse's is that pulse's (its seconds are float64)
MATCH_NS = 1_000


@dataclass(frozen=True)
class FrameInfo:
    """Per pulse of the detector's pulse list: None where the file does not say."""

    periods: np.ndarray | None  # from 0
    charges: np.ndarray | None  # µAh
    vetos: np.ndarray | None

    def of(self, i: int) -> tuple[int, float | None, int]:
        """(period from 0, charge or None, vetos) of pulse i."""
        period = int(self.periods[i]) if self.periods is not None else 0
        charge = float(self.charges[i]) if self.charges is not None else None
        vetos = int(self.vetos[i]) if self.vetos is not None else 0
        return period, charge, vetos


NO_FRAMELOG = FrameInfo(None, None, None)


def read_frames(entry: h5py.Group, pulse_times_ns: np.ndarray,
                run_start_ns: int | None) -> FrameInfo:
    framelog = entry.get("framelog")
    if not isinstance(framelog, h5py.Group):
        return NO_FRAMELOG
    periods = _aligned(framelog, "period_log", pulse_times_ns, run_start_ns)
    if periods is not None:
        periods = np.maximum(periods.astype(np.int64) - 1, 0)
    charges = _aligned(framelog, "proton_charge", pulse_times_ns, run_start_ns)
    vetos = _aligned(framelog, "vetos", pulse_times_ns, run_start_ns)
    return FrameInfo(periods, None if charges is None else charges.astype(np.float64),
                     None if vetos is None else vetos.astype(np.int64))


def _aligned(framelog: h5py.Group, name: str, pulse_times_ns: np.ndarray,
             run_start_ns: int | None) -> np.ndarray | None:
    group = framelog.get(name)
    if not isinstance(group, h5py.Group) or not isinstance(group.get("value"), h5py.Dataset):
        return None
    values = group["value"][()]
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        return None
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ReplayError(f"{group.name}/value holds non-finite values")
    if len(values) == len(pulse_times_ns):
        return values
    time_ds = group.get("time")
    if not isinstance(time_ds, h5py.Dataset) or len(time_ds) != len(values):
        return None
    times = to_ns(time_ds[()], ns_per_unit(attr_text(time_ds, "units"), time_ds.name),
                  time_ds.name)
    origin = attr_text(time_ds, "start") or attr_text(time_ds, "offset")
    if origin is not None:
        times = times + iso_to_ns(origin, f"{time_ds.name} start")
    elif run_start_ns is not None:
        times = times + run_start_ns
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    # the nearest framelog row to each pulse, if it is close enough; else the default
    at = np.clip(np.searchsorted(times, pulse_times_ns), 1, max(len(times) - 1, 1))
    if not len(times):
        return None
    left = np.clip(at - 1, 0, len(times) - 1)
    right = np.clip(at, 0, len(times) - 1)
    nearest = np.where(np.abs(times[left] - pulse_times_ns) <= np.abs(times[right]
                                                                        - pulse_times_ns),
                       left, right)
    matched = np.abs(times[nearest] - pulse_times_ns) <= MATCH_NS
    out = np.zeros(len(pulse_times_ns), values.dtype)
    out[matched] = values[nearest[matched]]
    return out
