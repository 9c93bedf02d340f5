"""Which pulses belong to a run: start <= pulse time < stop, in integer nanoseconds, the one
rule the DAE, the file writer and the live view apply alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABORT_PREFIX = "abort:"
"""A run stop (6s4t) whose command_id starts with this aborts the run instead of ending it:
its file is discarded, because at ISIS an aborted run leaves no file and its run number is
used again by the next BEGIN. The rest of the command_id is a UUID, as for any command."""


@dataclass(frozen=True)
class Window:
    start_ns: int
    stop_ns: int | None  # None until the stop is known

    def contains(self, t_ns: int) -> bool:
        return t_ns >= self.start_ns and (self.stop_ns is None or t_ns < self.stop_ns)

    def after(self, t_ns: int) -> bool:
        return self.stop_ns is not None and t_ns >= self.stop_ns


def pulses_in_window(reference_time: np.ndarray, window: Window) -> np.ndarray:
    """Boolean mask of the pulses that belong to the run: start <= t < stop."""
    if len(reference_time) == 1:  # one frame a message (ISIS's): no array arithmetic
        return np.array([window.contains(int(reference_time[0]))])
    mask = reference_time >= window.start_ns
    if window.stop_ns is not None:
        mask &= reference_time < window.stop_ns
    return mask


def events_of_pulses(index: np.ndarray, n_events: int,
                     mask: np.ndarray) -> slice | np.ndarray:
    """Which events belong to the pulses `mask` keeps (`index`: each pulse's first event): a
    slice when it keeps them all (no copy), else the events' positions."""
    if len(mask) == 1:  # one frame a message (ISIS's): without numpy's reductions
        return slice(int(index[0]), n_events) if mask[0] else slice(0, 0)
    if mask.all():
        return slice(int(index[0]) if len(index) else 0, n_events)
    ends = np.append(index[1:], n_events)
    return np.concatenate([np.arange(s, e) for s, e in zip(index[mask], ends[mask],
                                                           strict=True)])
