"""One run's live counts: events and frames in the run window (the same rule and the same
repeat filter as the file writer, so the totals equal the file's), and a periods x pixels x
time channels histogram of them. Pure: decoded messages in, numbers out.

Frames are ISIS's (datastream.frames): a frame's pu00 gives its period (from 0), proton
charge and vetoes; a vetoed frame is raw, not good, and its events are not data (older
streams: an ev42's is84 period, ev44 alone period 0). The histogram holds the periods seen so
far, up to max_periods and within max_mb of memory: a run's events in a period past those are
counted (EVENTS stays exact) but not binned, in `outside` (a monitor's in `monitor_outside`).

Beam monitors named by reset() (the run's, served as DAE spectra: liveview.monitor_spectra)
have a histogram each, one spectrum of the same time channels, periods and frames: their
events by the file writer's rules (in the run window, not repeated per source, of good
frames, in the frame's period), binned in the periods the detector histogram holds
(max_periods), as the file's monitor_hist_<i>/data has them. EVENTS and the rest count the
detector's events only."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from datastream.binning import EdgeIndex, bin_linear
from datastream.event_messages import check_events
from datastream.frames import FrameBook, good_pulses
from datastream.repeats import RecentMessages
from datastream.run_window import Window, events_of_pulses, pulses_in_window
from datastream.schemas.pu00 import PulseMetadata
from datastream.time_channels import TimeChannels

# periods binned at most, unless [liveview] max_periods says otherwise: each is a whole
# pixels x channels histogram (16 MB for 4096 pixels x 1000 channels)
MAX_PERIODS = 8
# the memory all periods' histograms may take, unless [liveview] max_histogram_mb says
# otherwise: the bound for 1M pixels x 8000 channels
MAX_HISTOGRAM_MB = 4096
# pixels of a region of interest summed under the lock at once (8 MB at 8000 channels)
ROI_CHUNK = 256


def check_size(n_pixels: int, channels: TimeChannels, max_mb: int) -> int:
    """The bytes of one period's histogram; ValueError if even one would pass max_mb (a
    dense uint32 histogram is allocated as it is touched, so too large a one would not fail
    at once: the host would run out of memory mid-run)."""
    size = n_pixels * channels.channels * np.dtype(np.uint32).itemsize
    if size > max_mb * 2**20:
        raise ValueError(
            f"a live histogram of {n_pixels:,} pixels x {channels.channels:,} time channels "
            f"takes {size / 2**20:,.0f} MB, over the {max_mb:,} MB allowed ([liveview] "
            "max_histogram_mb): bin fewer channels")
    return size


class RunHistogram:
    """Thread-safe: the consumer adds, the PV and web publishers read copies."""

    def __init__(self, first_pixel: int, n_pixels: int, channels: TimeChannels,
                 max_periods: int = MAX_PERIODS, max_mb: int = MAX_HISTOGRAM_MB) -> None:
        if max_periods < 1:
            raise ValueError("max_periods: at least 1")
        size = check_size(n_pixels, channels, max_mb)
        self.first_pixel, self.n_pixels, self.channels = first_pixel, n_pixels, channels
        # the periods binned: as many as asked for that fit in max_mb
        self.max_periods = min(max_periods, max_mb * 2**20 // size)
        self._lock = threading.Lock()
        self.window = Window(0, 0)  # no run: nothing belongs
        self.counts = np.zeros((1, n_pixels, channels.channels), np.uint32)
        self._edges = channels.edges()
        self._index = EdgeIndex(self._edges)
        self.events_ever = 0  # over every run this process binned, for the metrics
        self.reset(self.window)

    @property
    def periods(self) -> int:
        """Periods held: one more than the highest binned in this run, at least one (the
        snapshot's `periods` also counts those seen but not binned)."""
        return self.counts.shape[0]

    def reset(self, window: Window, monitors: Sequence[str] = ()) -> None:
        """Empty, for a run's window; `monitors`: the sources of the beam monitors binned."""
        with self._lock:
            self.window = window
            if self.periods > 1:  # the memory of a run of many periods goes with it
                self.counts = np.zeros((1, self.n_pixels, self.channels.channels), np.uint32)
            else:
                self.counts[:] = 0
            self.monitors = tuple(dict.fromkeys(monitors))
            self._monitor_row = {name: i for i, name in enumerate(self.monitors)}
            # [period, monitor, channel], grown with the periods binned as `counts`
            self.monitor_counts = np.zeros((1, len(self.monitors), self.channels.channels),
                                           np.uint32)
            # a source's message ids are its own: repeats are recognised per source, as the
            # file writer's are (and only for sources taken: their number is bounded)
            self._monitor_recent: dict[str, RecentMessages] = {}
            self.period_events = [0]
            self.book = FrameBook(window)  # the run's frames: good, raw, charge, periods
            self.events = 0  # every event of the run's good frames, binned or not
            # events of the run outside the pixels, time channels or periods binned
            self.outside = 0
            # beam monitors' events taken but not binned: in a period past those binned, or
            # outside the time channels (a monitor's are not in `events` or `outside`)
            self.monitor_outside = 0
            self.repeated = 0
            self.skipped = 0  # events counted but not binned (load shed)
            self.last_pulse_ns = 0
            # the period of the last frame counted into a period binned: what ISIS calls
            # the current period (DAE:SPEC:0:... reads it)
            self.current_period = 0
            self._recent = RecentMessages()

    def set_stop(self, stop_ns: int) -> None:
        with self._lock:
            self.window = Window(self.window.start_ns, stop_ns)
            self.book.set_stop(stop_ns)

    def add_pulse(self, pulse: PulseMetadata) -> None:
        """A frame's pu00 (before its events)."""
        with self._lock:
            self.book.add_pulse(pulse)

    def add(self, message_id: int, reference_time: np.ndarray, reference_index: np.ndarray,
            tof: np.ndarray, pixel_id: np.ndarray, bin_events: bool = True,
            period: int = 0, proton_charge: float = 0.0) -> int:
        """One message's events of the run's pulses, of good frames; returns how many were
        taken. `period` and `proton_charge` are an older stream's (ev42's is84), for frames
        with no pu00. bin_events=False: counted, not binned (liveview.load_shedding).
        Arrays that disagree raise MalformedMessage (datastream.event_messages.check_events,
        as read_events checked them already: the kernels index by them)."""
        ref = np.asarray(reference_time, np.int64)
        check_events(ref, reference_index, tof, pixel_id)
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
            taken = sum(self._add_pulses(idx, tof, pixel_id, chosen, p, bin_events)
                        for p, chosen in self.book.take(ref, mask, period,
                                                                proton_charge))
            self.last_pulse_ns = max(self.last_pulse_ns, int(ref[mask].max()))
            return taken

    def _add_pulses(self, idx: np.ndarray, tof: np.ndarray, pixel_id: np.ndarray,
                    chosen: np.ndarray, period: int, bin_events: bool) -> int:
        """Under the lock: the events of the pulses `chosen`, all of good frames of one
        period, counted and binned."""
        if not 0 <= period < self.max_periods:  # counted, and said in `outside`
            n = int((np.append(idx[1:], len(tof)) - idx)[chosen].sum())
            return self._counted(n, n, None)
        if not bin_events:  # count only: no copy, no kernel
            n = int((np.append(idx[1:], len(tof)) - idx)[chosen].sum())
            self.skipped += n
            return self._counted(n, 0, period)
        taken = events_of_pulses(idx, len(tof), chosen)
        pixel_id, tof = pixel_id[taken], tof[taken]
        skipped = self._bin(self._period(period), pixel_id, tof, self.first_pixel)
        return self._counted(len(tof), skipped, period)

    def _bin(self, hist: np.ndarray, ids: np.ndarray, tof: np.ndarray, first: int) -> int:
        """Events into hist (rows, channels) by the run's time channels; returns those
        skipped."""
        c = self.channels
        if c.logarithmic:
            return int(self._index.bin(hist, ids, tof, first))
        return int(bin_linear(hist, ids, tof, first, c.tof_min_ns, c.tof_max_ns, c.channels))

    def add_monitor(self, name: str, message_id: int, reference_time: np.ndarray,
                    reference_index: np.ndarray, tof: np.ndarray, pixel_id: np.ndarray,
                    period: int = 0) -> int:
        """A message of another source than the detector's: if it is a beam monitor's taken
        here (takes_monitor), the events of its run's good frames, returns how many. Their
        frames are the detector's pu00 (a pulse with none is good, in `period`: an ev42's
        is84), and are not counted again. Malformed arrays of a monitor's raise as add()'s
        do; another source's message is not read at all."""
        if not self.takes_monitor(name):  # (a dict's lookup: no lock needed to say no)
            return 0
        ref = np.asarray(reference_time, np.int64)
        check_events(ref, reference_index, tof, pixel_id)
        if len(ref) == 0:
            return 0
        with self._lock:
            if not self.takes_monitor(name):  # a new run's monitors meanwhile
                return 0
            mask = pulses_in_window(ref, self.window)
            if not mask.any():
                return 0
            recent = self._monitor_recent.setdefault(name, RecentMessages())
            if recent.repeated(int(message_id), int(ref[0])):
                return 0
            idx = np.asarray(reference_index, np.int64)
            frames = self.book.frames_of(ref, mask, period, count=False)
            taken = 0
            for p, chosen in good_pulses(frames, mask):
                events = tof[events_of_pulses(idx, len(tof), chosen)]
                self._add_monitor_events(name, events, p)
                taken += len(events)
            return taken

    def takes_monitor(self, name: str) -> bool:
        """Whether a source's events are taken as a beam monitor's (its answer holds under
        the lock: reset() changes it)."""
        return name in self._monitor_row

    def _add_monitor_events(self, name: str, tof: np.ndarray, period: int) -> None:
        """Under the lock: a monitor's events of good frames of one period, binned in its
        spectrum if it has one here and the period is binned."""
        row = self._monitor_row.get(name)
        if row is None or not len(tof):
            return
        if not 0 <= period < self.max_periods:
            self.monitor_outside += len(tof)
            return
        if period >= self.monitor_counts.shape[0]:
            grown = np.zeros((period + 1, *self.monitor_counts.shape[1:]), np.uint32)
            grown[:self.monitor_counts.shape[0]] = self.monitor_counts
            self.monitor_counts = grown
        # the monitor's row alone: a monitor is one spectrum, whatever its events' ids
        self.monitor_outside += self._bin(self.monitor_counts[period, row:row + 1],
                                          np.zeros(len(tof), np.int32), tof, 0)

    def monitor(self, name: str, period: int) -> np.ndarray:
        """A copy of a monitor's counts per time channel in one period (from 0); zeros for
        a monitor or period not held."""
        with self._lock:
            row = self._monitor_row.get(name)
            if row is None or not 0 <= period < self.monitor_counts.shape[0]:
                return np.zeros(self.channels.channels, np.uint32)
            return self.monitor_counts[period, row].copy()

    def _period(self, period: int) -> np.ndarray:
        """Under the lock: one period's (pixels, channels), the histogram grown to hold it."""
        if period >= self.periods:
            grown = np.zeros((period + 1, *self.counts.shape[1:]), np.uint32)
            grown[:self.periods] = self.counts
            self.counts = grown
        return self.counts[period]

    def _counted(self, events: int, outside: int, period: int | None) -> int:
        """Under the lock: the totals of what add() took."""
        self.events += events
        self.events_ever += events
        self.outside += outside
        if period is not None:
            while len(self.period_events) <= period:
                self.period_events.append(0)
            self.period_events[period] += events
            self.current_period = period
        return events

    @property
    def frames(self) -> int:
        """Good frames of the run."""
        return self.book.totals.good_frames

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            t = self.book.totals
            periods = max(len(self.period_events), max(t.periods, default=0) + 1)
            return {"events": self.events, "frames": t.good_frames,
                    "raw_frames": t.raw_frames, "good_uah": t.good_uah, "raw_uah": t.raw_uah,
                    "outside": self.outside, "monitor_outside": self.monitor_outside,
                    "repeated": self.repeated, "skipped": self.skipped,
                    "last_pulse_ns": self.last_pulse_ns,
                    "periods": periods,
                    "period_events": self.period_events + [0] * (periods
                                                                 - len(self.period_events)),
                    "period_frames": t.per_period("good_frames", periods),
                    "period_raw_frames": t.per_period("raw_frames", periods),
                    "period_uah": t.per_period("good_uah", periods),
                    "start_ns": self.window.start_ns, "stop_ns": self.window.stop_ns}

    # Readers: of one period (from 0), or with period=None of all of them summed. A period
    # not seen yet reads as zeros.
    def _of(self, period: int | None) -> np.ndarray:
        """Under the lock: (periods, pixels, channels) of one period or all."""
        if period is None:
            return self.counts
        if 0 <= period < self.periods:
            return self.counts[period:period + 1]
        return np.zeros((1, *self.counts.shape[1:]), np.uint32)

    def pixel_totals(self, first_channel: int = 0, stop_channel: int | None = None,
                     period: int | None = None) -> np.ndarray:
        """Counts per pixel over time channels [first, stop) (the detector image)."""
        with self._lock:
            return self._of(period)[:, :, first_channel:stop_channel].sum(
                axis=(0, 2), dtype=np.uint64)

    def rows(self, period: int, start: int, stop: int) -> np.ndarray:
        """A copy of one period's counts of pixel rows [start, stop) (rows from the first
        pixel), (rows, channels); zeros for a period not held."""
        with self._lock:
            return self._of(period)[0, start:stop].copy()

    def rows_at(self, period: int, rows: np.ndarray) -> np.ndarray:
        """A copy of one period's counts of some pixel rows (from the first pixel), (rows,
        channels), in their order; zeros for a period not held. Rows one after another, the
        usual case, are copied as one block."""
        rows = np.asarray(rows, np.int64)
        adjacent = len(rows) > 0 and bool((np.diff(rows) == 1).all())
        with self._lock:
            of = self._of(period)[0]
            if adjacent:
                return of[rows[0]:rows[-1] + 1].copy()
            return of[rows]

    def spectrum(self, pixel: int | None = None, period: int | None = None) -> np.ndarray:
        """Counts per time channel of one pixel (by id), or of all pixels."""
        with self._lock:
            counts = self._of(period)
            if pixel is None:
                return counts.sum(axis=(0, 1), dtype=np.uint64)
            return counts[:, pixel - self.first_pixel].sum(axis=0, dtype=np.uint64)

    def spectrum_of(self, pixels: np.ndarray, period: int | None = None) -> np.ndarray:
        """Counts per time channel summed over some pixels (by id): a region of interest.
        Summed ROI_CHUNK pixels at a time, each under the lock on its own: a region as large
        as the detector neither copies the histogram nor holds up the binning for long."""
        rows = np.asarray(pixels, np.int64) - self.first_pixel
        total = np.zeros(self.channels.channels, np.uint64)
        for start in range(0, len(rows), ROI_CHUNK):
            with self._lock:
                total += self._of(period)[:, rows[start:start + ROI_CHUNK]].sum(
                    axis=(0, 1), dtype=np.uint64)
        return total
