"""The run's histogram that also reduces: the events RunHistogram bins (those of the run's
good frames, after its repeat filter and FrameBook.take) go, in the same call and under the
same lock, to the live reduction (liveview.reduction). So the reduction sees exactly the
events the TOF histogram and LIVE:EVENTS count, one selection in one place, and is emptied
when the histogram is (a new run, or the run read again from its start after new time
channels). Beam monitors' events come through RunHistogram.add_monitor's one selection too
(pulses in the run window, not repeated, of good frames): the same events make a monitor's
DAE spectrum and its I(λ)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datastream.run_window import Window, events_of_pulses
from datastream.time_channels import TimeChannels
from liveview.reduction import Reduction
from liveview.run_histogram import MAX_HISTOGRAM_MB, MAX_PERIODS, RunHistogram


class ReducingHistogram(RunHistogram):
    def __init__(self, reduction: Reduction, first_pixel: int, n_pixels: int,
                 channels: TimeChannels, max_periods: int = MAX_PERIODS,
                 max_mb: int = MAX_HISTOGRAM_MB) -> None:
        self.reduction = reduction  # before RunHistogram's __init__, which resets
        super().__init__(first_pixel, n_pixels, channels, max_periods, max_mb)

    def reset(self, window: Window, monitors: Sequence[str] = ()) -> None:
        super().reset(window, monitors)
        with self._lock:
            self.reduction.reset()

    def _add_pulses(self, idx: np.ndarray, tof: np.ndarray, pixel_id: np.ndarray,
                    chosen: np.ndarray, period: int, bin_events: bool) -> int:
        """Under the lock: good frames' events of one period. Reduced whatever their period
        (a period past those binned is still data), unless shed (bin_events False)."""
        if bin_events:
            taken = events_of_pulses(idx, len(tof), chosen)
            self.reduction.add(pixel_id[taken], tof[taken])
        return super()._add_pulses(idx, tof, pixel_id, chosen, period, bin_events)

    def takes_monitor(self, name: str) -> bool:
        """The run's monitors, and the geometry's that I(λ) has."""
        return super().takes_monitor(name) or name in self.reduction.monitor_factor

    def _add_monitor_events(self, name: str, tof: np.ndarray, period: int) -> None:
        """Under the lock: to I(λ) whatever the period (as the detector's to I(d)), and to
        the monitor's spectrum."""
        self.reduction.add_monitor(name, tof)
        super()._add_monitor_events(name, tof, period)
