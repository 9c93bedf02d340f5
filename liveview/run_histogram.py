"""One run's live counts: events and frames in the run window (the same rule and the same
repeat filter as the file writer, so the totals equal the file's), and a pixels x time
channels histogram of them. Pure: decoded messages in, numbers out."""

from __future__ import annotations

import threading

import numpy as np

from datastream.repeats import RecentMessages
from datastream.run_window import Window, events_of_pulses, pulses_in_window
from liveview.binning import bin_edges, bin_linear
from liveview.time_channels import TimeChannels


class RunHistogram:
    """Thread-safe: the consumer adds, the PV and web publishers read copies."""

    def __init__(self, first_pixel: int, n_pixels: int, channels: TimeChannels) -> None:
        self.first_pixel, self.n_pixels, self.channels = first_pixel, n_pixels, channels
        self._lock = threading.Lock()
        self.window = Window(0, 0)  # no run: nothing belongs
        self.counts = np.zeros((n_pixels, channels.channels), np.uint32)
        self._edges = channels.edges()
        # far larger than the caches: the kernel that sorts events by pixel block first
        self.events_ever = 0  # over every run this process binned, for the metrics
        self.reset(self.window)

    def reset(self, window: Window) -> None:
        with self._lock:
            self.window = window
            self.counts[:] = 0
            self.events = 0  # every event of the run's pulses, binned or not
            self.frames = 0
            self.outside = 0  # events of the run outside the pixels or time channels
            self.repeated = 0
            self.skipped = 0  # events counted but not binned (load shed)
            self.last_pulse_ns = 0
            self._recent = RecentMessages()

    def set_stop(self, stop_ns: int) -> None:
        with self._lock:
            self.window = Window(self.window.start_ns, stop_ns)

    def add(self, message_id: int, reference_time: np.ndarray, reference_index: np.ndarray,
            tof: np.ndarray, pixel_id: np.ndarray, bin_events: bool = True) -> int:
        """One ev44's events of the run's pulses; returns how many were taken.
        bin_events=False: counted, not binned (liveview.load_shedding)."""
        ref = np.asarray(reference_time, np.int64)
        if len(ref) == 0:
            return 0
        with self._lock:
            mask = pulses_in_window(ref, self.window)
            if not mask.any():
                return 0
            if self._recent.repeated(int(message_id), int(ref[0])):
                self.repeated += 1
                return 0
            idx = np.asarray(reference_index, np.int64)
            ends = np.append(idx[1:], len(tof))
            if not bin_events:  # count only: no copy, no kernel
                n = int((ends - idx)[mask].sum())
                self.skipped += n
                return self._counted(n, int(mask.sum()), ref[mask], 0)
            taken = events_of_pulses(idx, len(tof), mask)
            pixel_id, tof = pixel_id[taken], tof[taken]
            c = self.channels
            if c.logarithmic:
                skipped = bin_edges(self.counts, pixel_id, tof, self.first_pixel, self._edges)
            else:
                skipped = bin_linear(self.counts, pixel_id, tof, self.first_pixel,
                                     c.tof_min_ns, c.tof_max_ns, c.channels)
            return self._counted(len(tof), int(mask.sum()), ref[mask], int(skipped))

    def _counted(self, events: int, frames: int, pulses: np.ndarray, outside: int) -> int:
        """Under the lock: the totals of what add() took."""
        self.events += events
        self.events_ever += events
        self.outside += outside
        self.frames += frames
        self.last_pulse_ns = max(self.last_pulse_ns, int(pulses.max()))
        return events

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"events": self.events, "frames": self.frames, "outside": self.outside,
                    "repeated": self.repeated, "skipped": self.skipped,
                    "last_pulse_ns": self.last_pulse_ns,
                    "start_ns": self.window.start_ns, "stop_ns": self.window.stop_ns}

    def pixel_totals(self, first_channel: int = 0,
                     stop_channel: int | None = None) -> np.ndarray:
        """Counts per pixel over time channels [first, stop) (the detector image)."""
        with self._lock:
            return self.counts[:, first_channel:stop_channel].sum(axis=1, dtype=np.uint64)

    def spectrum(self, pixel: int | None = None) -> np.ndarray:
        """Counts per time channel of one pixel (by id), or of all pixels."""
        with self._lock:
            if pixel is None:
                return self.counts.sum(axis=0, dtype=np.uint64)
            return self.counts[pixel - self.first_pixel].copy()

    def spectrum_of(self, pixels: np.ndarray) -> np.ndarray:
        """Counts per time channel summed over some pixels (by id): a region of interest."""
        with self._lock:
            return self.counts[pixels - self.first_pixel].sum(axis=0, dtype=np.uint64)
