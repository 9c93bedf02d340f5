"""The run's histogram that also reduces: the events RunHistogram bins (those of the run's
good frames, after its repeat filter and FrameBook.take) go, in the same call and under the
same lock, to the live reduction (liveview.reduction). So the reduction sees exactly the
events the TOF histogram and LIVE:EVENTS count, one selection in one place, and is emptied
when the histogram is (a new run, or the run read again from its start after new time
channels). Beam monitors' events, which RunHistogram does not bin, are taken here by the
same rules: pulses in the run window, not repeated, not of a vetoed frame."""

from __future__ import annotations

import numpy as np

from datastream.event_messages import check_events
from datastream.repeats import RecentMessages
from datastream.run_window import Window, events_of_pulses, pulses_in_window
from datastream.time_channels import TimeChannels
from liveview.reduction import Reduction
from liveview.run_histogram import MAX_HISTOGRAM_MB, MAX_PERIODS, RunHistogram


class ReducingHistogram(RunHistogram):
    def __init__(self, reduction: Reduction, first_pixel: int, n_pixels: int,
                 channels: TimeChannels, max_periods: int = MAX_PERIODS,
                 max_mb: int = MAX_HISTOGRAM_MB) -> None:
        self.reduction = reduction  # before RunHistogram's __init__, which resets
        self._monitor_recent = RecentMessages()
        super().__init__(first_pixel, n_pixels, channels, max_periods, max_mb)

    def reset(self, window: Window) -> None:
        super().reset(window)
        with self._lock:
            self._monitor_recent = RecentMessages()
            self.reduction.reset()

    def _add_pulses(self, idx: np.ndarray, tof: np.ndarray, pixel_id: np.ndarray,
                    chosen: np.ndarray, period: int, bin_events: bool) -> int:
        """Under the lock: good frames' events of one period. Reduced whatever their period
        (a period past those binned is still data), unless shed (bin_events False)."""
        if bin_events:
            taken = events_of_pulses(idx, len(tof), chosen)
            self.reduction.add(pixel_id[taken], tof[taken])
        return super()._add_pulses(idx, tof, pixel_id, chosen, period, bin_events)

    def add_monitor(self, name: str, message_id: int, reference_time: np.ndarray,
                    reference_index: np.ndarray, tof: np.ndarray,
                    pixel_id: np.ndarray) -> int:
        """A beam monitor's event message (its source `name`): the events of the run's
        frames not known to be vetoed go to I(λ). Returns how many."""
        ref = np.asarray(reference_time, np.int64)
        check_events(ref, reference_index, tof, pixel_id)
        if len(ref) == 0 or name not in self.reduction.monitor_factor:
            return 0
        with self._lock:
            mask = pulses_in_window(ref, self.window)
            if not mask.any() or self._monitor_recent.repeated(int(message_id), int(ref[0])):
                return 0
            mask &= np.array([self.book.is_good(t) for t in ref.tolist()], bool)
            if not mask.any():
                return 0
            taken = events_of_pulses(np.asarray(reference_index, np.int64), len(tof), mask)
            tof = tof[taken]
            self.reduction.add_monitor(name, tof)
            return len(tof)
