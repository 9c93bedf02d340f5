"""`isis_histogram`: the histograms ISIS's ICP writes, binned here from the events of good
frames, as LoadISISNexus2 reads them: detector_1/counts [period, spectrum, time channel]
int32, each monitor's monitor_N/data [period, 1, time channel], instrument/dae/
time_channels_1, and isis_vms_compat (the spectrum-detector map and run parameters).

Time channels are the run's TCB (the pl72 metadata's "tcb", as the live view bins), spectra
the pl72's detector-spectrum map (else one spectrum a pixel over the configured range).
Counts are kept in memory a byte a bin, carrying into a uint32 per bin as they wrap
(EdgeIndex.bin's `high`: the binning runs over a quarter of the memory), a time channel a row
(events sorted by time of flight, as the DAE sends them, stay in the cache), and written at
close, a spectrum a row; a histogram larger than `max_bytes` is refused: the module says why
in the job's answer and the file is written without it.

The job's thread places each message's frames (periods, vetoes, the run window) in order and
hands the counting to a binning thread. When that thread falls behind (its queue full), the
job's thread bins the message itself into a tally of its own instead of waiting, where
max_bytes holds a second copy of the period beside every period the run declared; the two
tallies are added at close (benchmarks/filewriter_throughput.py: 51.6 -> 57.6 M events/s
with the histogram, 100 M events, on a 2-core host shared with the broker)."""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from datastream.binning import EdgeIndex, channel_major, wide_counts
from datastream.event_messages import Events
from datastream.frames import FrameBook
from datastream.repeats import RecentMessages
from datastream.run_window import events_of_pulses
from datastream.time_channels import TimeChannels
from filewriter.modules import vms_detectors
from filewriter.modules.base import Decoded, RunModule, config_int
from filewriter.run_context import RunContext
from filewriter.timing import Window, pulses_in_window

DEFAULT_MAX_BYTES = 1 << 30
# a detector-id lookup table larger than this (ids spread over a huge range) is refused
MAX_LOOKUP = 1 << 26
# periods a histogram holds at most: a period number is the sender's word (a uint32)
DEFAULT_MAX_PERIODS = 1000
AXES = "period_index:spectrum_index:time_of_flight"
VMS_INT_WORDS = 64  # SPB, IRPB: ICP's parameter blocks, longer than any index read
VMS_REAL_WORDS = 64


class HistogramRefused(ValueError):
    """The histogram cannot be made for this run; the message says why."""


@dataclass(frozen=True)
class SpectrumMap:
    """Which histogram row each detector's events go to."""

    spectra: np.ndarray  # the rows' spectrum numbers, ascending
    detectors: np.ndarray  # UDET: each detector id ...
    detector_spectra: np.ndarray  # ... and its spectrum (SPEC)
    first_id: int
    rows: np.ndarray | None  # row by detector id - first_id, -1: none; None: id - first_id

    @classmethod
    def build(cls, spectra: np.ndarray, detectors: np.ndarray) -> SpectrumMap:
        spectra = np.asarray(spectra, np.int64)
        detectors = np.asarray(detectors, np.int64)
        rows_spectra = np.unique(spectra)
        first, last = int(detectors.min()), int(detectors.max())
        if last - first + 1 > MAX_LOOKUP:
            raise HistogramRefused(f"detector ids span {last - first + 1:,}, more than "
                                   f"{MAX_LOOKUP:,}")
        row_of = np.searchsorted(rows_spectra, spectra)
        if len(np.unique(detectors)) != len(detectors):
            raise HistogramRefused("a detector id has more than one spectrum")
        identity = (len(detectors) == last - first + 1
                    and np.array_equal(row_of, detectors - first))
        lookup = None
        if not identity:
            lookup = np.full(last - first + 1, -1, np.int32)
            lookup[detectors - first] = row_of
        return cls(rows_spectra, detectors, spectra, first, lookup)

    def rows_of(self, pixel_id: np.ndarray) -> tuple[np.ndarray, int]:
        """(row ids, first) for the binning kernel: row = id - first, outside: skipped."""
        if self.rows is None:
            return pixel_id, self.first_id
        offset = pixel_id.astype(np.int64) - self.first_id
        inside = (offset >= 0) & (offset < len(self.rows))
        rows = np.full(len(pixel_id), -1, np.int32)
        rows[inside] = self.rows[offset[inside]]
        return rows, 0


log = logging.getLogger(__name__)
# binning tasks the binning thread may be behind the job by: bounds the memory they hold
BINNER_DEPTH = 64
# how often an idle binning thread looks whether its module is still there
IDLE_CHECK_S = 30.0
_DONE = object()


@dataclass(frozen=True)
class _Task:
    """Events of good frames of one period of one source, to bin: `rows` (spectrum rows,
    row = id - first; outside: skipped) and their times of flight."""

    source: str
    period: int
    rows: np.ndarray
    tof: np.ndarray
    first: int


class _Binner:
    """Calls `take(task)` for each task in its own thread. An error stops the binning
    (finish() returns it): the events are still written, the histogram is left out. The
    thread ends at finish(), or once its module is gone (a job that failed before closing
    its modules). With its queue full, the job's thread may take a task back (steal()) and
    bin it itself: counts add up in any order."""

    def __init__(self, take: Callable[[_Task], None]) -> None:
        self._take = weakref.WeakMethod(take)
        self._queue: queue.Queue[object] = queue.Queue(BINNER_DEPTH)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="isis-histogram", daemon=True)
        self._thread.start()

    def offer(self, task: _Task) -> bool:
        """Queued (or dropped after an error) unless the queue is full."""
        if self.error is not None:
            return True
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            return False
        return True

    def put(self, task: _Task) -> None:
        if self.error is None:
            self._queue.put(task)

    def steal(self) -> _Task | None:
        """A task still queued, taken back; None if none is. (The job's thread calls it
        before finish(), the only sender of _DONE: no task here is _DONE.)"""
        try:
            return self._queue.get_nowait()  # type: ignore[return-value]
        except queue.Empty:
            return None

    def finish(self) -> BaseException | None:
        self._queue.put(_DONE)
        self._thread.join()
        return self.error

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_CHECK_S)
            except queue.Empty:
                if self._take() is None:  # the module is gone without closing
                    return
                continue
            if item is _DONE:
                return
            self._handle(item)  # type: ignore[arg-type]

    def _handle(self, task: _Task) -> None:
        # the module's method is held here only, not across the wait for the next task: a
        # module gone without closing is then collected, and the thread ends
        take = self._take()
        if take is None or self.error is not None:
            return  # drained, not binned: the producer must never block for ever
        try:
            take(task)
        except Exception as exc:
            log.exception("isis_histogram: binning failed")
            self.error = exc


@dataclass
class _Tally:
    """One thread's counts: each period's detector histogram, each monitor's, and the
    events they skipped. The binning thread and the job's (when it bins a task itself) have
    one each, added up at close: no count is shared between threads."""

    detector: dict[int, _Counts]
    monitors: dict[str, dict[int, _Counts]]
    skipped: int = 0


@dataclass
class Monitor:
    source: str
    name: str
    spectrum: int
    detector_id: int


def _channels(config: dict[str, Any], run: RunContext) -> TimeChannels:
    channels = run.channels
    if channels is not None:
        return channels
    tcb = config.get("time_channels")
    if not isinstance(tcb, dict):
        raise HistogramRefused("no time channels: the run start has no tcb and the "
                               "module's config no time_channels")
    try:
        return TimeChannels(float(tcb["tof_min_ns"]), float(tcb["tof_max_ns"]),
                            int(tcb["channels"]), bool(tcb.get("logarithmic", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise HistogramRefused(f"time_channels: {exc}") from exc


def _spectrum_map(config: dict[str, Any], run: RunContext) -> SpectrumMap:
    if run.spectrum_map is not None:
        return SpectrumMap.build(*run.spectrum_map)
    pixels = config_int(config, "pixels", 0, 0, MAX_LOOKUP)
    if not pixels:
        raise HistogramRefused("no spectra: the run start has no detector-spectrum map and "
                               "the module's config no pixels")
    first = config_int(config, "first_pixel", 1, -(2**31), 2**31 - 1)
    ids = np.arange(first, first + pixels, dtype=np.int64)
    return SpectrumMap.build(ids, ids)


def _monitors(config: dict[str, Any], after: int) -> list[Monitor]:
    raw = config.get("monitors") or []
    if not isinstance(raw, list) or not all(isinstance(m, dict) and m.get("source")
                                            for m in raw):
        raise ValueError("isis_histogram monitors: a list of {source, detector_id, "
                         "spectrum, name}")
    return [Monitor(str(m["source"]), str(m.get("name") or f"monitor_{i}"),
                    int(m.get("spectrum") or after + i), int(m.get("detector_id") or 0))
            for i, m in enumerate(raw, start=1)]


def _period_index(group: h5py.Group) -> h5py.Dataset:
    """The periods' numbers (from 1), filled at close when their number is known."""
    return group.create_dataset("period_index", shape=(0,), maxshape=(None,), dtype=np.int32,
                                chunks=(64,))


def _int32(group: h5py.Group, name: str, values: Any) -> h5py.Dataset:
    return group.create_dataset(name, data=np.asarray(values, np.int32).reshape(-1))


class IsisHistogramWriter(RunModule):
    """`isis_histogram`, in the entry (NXentry). Config: `topic`, `source` (the DAE's
    events source: its pu00 and detector ev44), `monitors` (a list of {"source": the
    monitor's events source, "detector_id", "spectrum" (default: after the detectors'),
    "name" (its NXmonitor group, default monitor_<i>; not a group holding events)}),
    `pixels` and `first_pixel` (one spectrum a pixel, when the run start has no
    detector-spectrum map), `time_channels` ({tof_min_ns, tof_max_ns, channels,
    logarithmic}, when the run start has no tcb), `periods` (at least this many, default 1),
    `max_periods` (default 1000), `max_bytes` (the counts in memory, default 1 GiB),
    `detectors` (the detector table isis_vms_compat holds beside UDET: vms_detectors)."""

    accepts = frozenset({"pu00", "ev44", "ev42"})

    def __init__(self, group: h5py.Group, config: dict[str, Any], run: RunContext) -> None:
        super().__init__(group, config, run)
        self._source = str(config.get("source"))
        self._max_bytes = config_int(config, "max_bytes", DEFAULT_MAX_BYTES, 1, 1 << 48)
        self._max_periods = config_int(config, "max_periods", DEFAULT_MAX_PERIODS, 1, 1 << 20)
        self._min_periods = min(max(config_int(config, "periods", 1, 1, self._max_periods),
                                    run.periods), self._max_periods)
        self.book = FrameBook(Window(run.start_ns, None))
        self._recent: dict[str, RecentMessages] = {}
        self.counts = {"histogram_refused_events": 0, "histogram_skipped_events": 0}
        # the binning thread's counts, and the job thread's once it bins a task itself
        self._tally = _Tally({}, {})
        self._job_tally: _Tally | None = None
        self._periods: set[int] = set()  # the detector's periods held
        self._error: BaseException | None = None  # of the job thread's own binning
        self.enabled = False
        self._binner: _Binner | None = None
        try:
            self._channels = _channels(config, run)
            self._map = _spectrum_map(config, run)
            n_spectra, n_channels = len(self._map.spectra), self._channels.channels
            # a byte a bin, and its carry (4 bytes, its pages taken only as bins pass 255)
            self._period_bytes = n_spectra * n_channels * 5
            if self._period_bytes > self._max_bytes:
                raise HistogramRefused(
                    f"{n_spectra:,} spectra x {n_channels:,} channels is "
                    f"{self._period_bytes:,} bytes a period, more than max_bytes "
                    f"{self._max_bytes:,}")
        except HistogramRefused as exc:
            self.warnings.append(f"isis_histogram refused, the file has no histograms: {exc}")
            return
        self._edges = self._channels.edges()
        self._index = EdgeIndex(self._edges)
        self._monitors = _monitors(config, int(self._map.spectra.max()))
        self._detectors: vms_detectors.VmsDetectors | None = None
        if config.get("detectors") is not None:
            try:
                self._detectors = vms_detectors.parse(config["detectors"])
            except ValueError as exc:  # the histograms are written; the table is not
                self.warnings.append(f"isis_histogram: the detector table is not written: "
                                     f"{exc}")
        self.more_sources = tuple(m.source for m in self._monitors)
        self.enabled = True
        self._make(group)

    # -- the file's structure, made at open: SWMR takes no new dataset later --
    def _make(self, entry: h5py.Group) -> None:
        n_spectra, n_channels = len(self._map.spectra), self._channels.channels
        tof_us = (self._edges / 1e3).astype(np.float32)
        det = entry.require_group("detector_1")
        det.attrs["NX_class"] = "NXdata"
        det.attrs["signal"] = "counts"
        rows = max(1, min(n_spectra, (4 << 20) // (4 * n_channels)))
        self._counts = det.create_dataset(
            "counts", shape=(0, n_spectra, n_channels), maxshape=(None, n_spectra, n_channels),
            dtype=np.int32, chunks=(1, rows, n_channels))
        self._counts.attrs["signal"] = np.int32(1)
        self._counts.attrs["units"] = "counts"
        # NeXus's older per-dataset form: a string, not the group's array attribute, which
        # Mantid's NeXus reader may refuse (array attributes make its dataset opens throw)
        self._counts.attrs["axes"] = AXES
        self._period_index = [_period_index(det)]
        _int32(det, "spectrum_index", self._map.spectra)
        det.create_dataset("time_of_flight", data=tof_us).attrs["units"] = "microsecond"
        self._monitor_data: dict[str, h5py.Dataset] = {}
        for m in self._monitors:
            mon = entry.require_group(m.name)
            mon.attrs["NX_class"] = "NXmonitor"
            data = mon.create_dataset("data", shape=(0, 1, n_channels),
                                      maxshape=(None, 1, n_channels), dtype=np.int32,
                                      chunks=(1, 1, n_channels))
            data.attrs["signal"] = np.int32(1)
            data.attrs["units"] = "counts"
            data.attrs["axes"] = AXES
            self._period_index.append(_period_index(mon))
            _int32(mon, "spectrum_index", [m.spectrum])
            mon.create_dataset("time_of_flight", data=tof_us).attrs["units"] = "microsecond"
            self._monitor_data[m.source] = data
        if "instrument" in entry:
            dae = entry["instrument"].require_group("dae")
            dae.attrs["NX_class"] = "IXdae"
            tc = dae.create_group("time_channels_1")
            tc.attrs["NX_class"] = "IXtime_channels"
            tc.create_dataset("time_of_flight", data=tof_us).attrs["units"] = "microsecond"
            tc.create_dataset("time_of_flight_raw", data=self._edges.astype(np.float64)
                              ).attrs["units"] = "ns"
        self._make_vms(entry, n_spectra, n_channels)

    def _make_vms(self, entry: h5py.Group, n_spectra: int, n_channels: int) -> None:
        vms = entry.create_group("isis_vms_compat")
        vms.attrs["NX_class"] = "IXvms"
        udet = np.concatenate([self._map.detectors, [m.detector_id for m in self._monitors]])
        spec = np.concatenate([self._map.detector_spectra,
                               [m.spectrum for m in self._monitors]])
        n_mon = len(self._monitors)
        n_sp1 = n_spectra + n_mon
        if int(spec.max()) - int(spec.min()) + 1 != n_sp1:
            self.warnings.append(
                f"isis_histogram: spectra {int(spec.min())}..{int(spec.max())} are not "
                f"contiguous over {n_sp1} spectra: LoadISISNexus2 will refuse the file")
        _int32(vms, "NSP1", [n_sp1])
        _int32(vms, "NTC1", [n_channels])
        _int32(vms, "NDET", [len(udet)])
        _int32(vms, "NMON", [n_mon])
        # the monitors' places in UDET, from 1, as ICP's MDET
        _int32(vms, "MDET", np.arange(len(self._map.detectors) + 1, len(udet) + 1))
        _int32(vms, "MONP", np.zeros(n_mon))
        _int32(vms, "UDET", udet)
        _int32(vms, "SPEC", spec)
        if self._detectors is not None:
            self.warnings += vms_detectors.write(vms, udet, self._detectors)
        _int32(vms, "SPB", np.zeros(VMS_INT_WORDS))
        rspb = np.zeros(VMS_REAL_WORDS, np.float32)
        rspb[3:6] = 1.0  # sample thickness, height, width: ICP's defaults
        vms.create_dataset("RSPB", data=rspb)
        name = (self.run.instrument or "UNKNOWN").encode()[:8]
        vms.create_dataset("NAME", data=np.array([name], dtype="S8"))
        self._vms = {"NPER": _int32(vms, "NPER", [0]),
                     "IRPB": _int32(vms, "IRPB", np.zeros(VMS_INT_WORDS)),
                     "RRPB": vms.create_dataset("RRPB", data=np.zeros(VMS_REAL_WORDS,
                                                                      np.float32))}

    # -- binning, in a thread of its own beside the job's (the kernel runs without the GIL):
    # the events' writing to disk and their binning overlap. Frames are placed here, in
    # the job's thread, in the messages' order; only the counting is handed on --
    def write(self, message: Decoded, window: Window) -> None:
        if not self.enabled:
            return
        if self.book.window.stop_ns != window.stop_ns:
            self.book.set_stop(window.stop_ns)
        if message.schema == "pu00":
            if message.source == self._source:
                self.book.add_pulse(message.data)
            return
        for task in self._tasks(message.source, message.data, window):
            self._hand(task)

    def _tasks(self, source: str, ev: Events, window: Window) -> list[_Task]:
        ref = np.asarray(ev.reference_time, dtype=np.int64)
        mask = pulses_in_window(ref, window)
        if not mask.any():
            return []
        recent = self._recent.setdefault(source, RecentMessages())
        if recent.repeated(int(ev.message_id), int(ref[0])):
            return []
        idx = np.asarray(ev.reference_time_index, dtype=np.int64)
        n = len(ev.time_of_flight)
        tasks = []
        for period, pulses in self.book.take(ref, mask, ev.period):
            which = events_of_pulses(idx, n, pulses)
            tof = ev.time_of_flight[which]
            if not self._admit(source, period, len(tof)):
                continue
            if source == self._source:
                rows, first = self._map.rows_of(ev.pixel_id[which])
            else:  # a monitor is one spectrum, whatever its events' ids
                rows, first = np.zeros(len(tof), np.int32), 0
            tasks.append(_Task(source, period, rows, tof, first))
        return tasks

    def _admit(self, source: str, period: int, n_events: int) -> bool:
        """Whether a period of `source` is binned: not past max_periods, nor (the
        detector's) past max_bytes with what both tallies hold; else its events are counted
        as refused."""
        if period >= self._max_periods:
            self.counts["histogram_refused_events"] += n_events
            return False
        if source != self._source:
            return True
        if period not in self._periods:
            if ((len(self._periods) + 1 + len(self._held_here())) * self._period_bytes
                    > self._max_bytes):
                self.counts["histogram_refused_events"] += n_events
                return False
            self._periods.add(period)
        return True

    def _hand(self, task: _Task) -> None:
        """To the binning thread; with its queue full, binned here instead where memory
        allows a second copy of the period, so the job does not wait on the binning."""
        if self._error is not None:
            return
        if self._binner is None:
            self._binner = _Binner(self._take)
        if self._binner.offer(task):
            return
        if self._room_here(task):
            self._bin_here(task)
        else:
            self._binner.put(task)

    def _room_here(self, task: _Task) -> bool:
        """Whether the job thread may bin `task` into its own tally: a monitor's always (one
        spectrum); a detector period it holds already, or one more within max_bytes beside
        every period the run declared (so sharing never refuses a period the run has)."""
        if task.source != self._source:
            return True
        held = self._held_here()
        if task.period in held:
            return True
        periods = max(len(self._periods), self._min_periods)
        return (periods + len(held) + 1) * self._period_bytes <= self._max_bytes

    def _held_here(self) -> dict[int, _Counts]:
        """The detector periods the job thread's own tally holds."""
        return self._job_tally.detector if self._job_tally is not None else {}

    def _bin_here(self, task: _Task) -> None:
        """In the job's thread, into its own tally: an error ends the binning as the
        binning thread's does (the events are still written, the histogram is left out)."""
        if self._job_tally is None:
            self._job_tally = _Tally({}, {})
        try:
            self._bin_into(self._job_tally, task)
        except Exception as exc:
            log.exception("isis_histogram: binning failed")
            self._error = exc

    def _take(self, task: _Task) -> None:
        self._bin_into(self._tally, task)

    def _bin_into(self, tally: _Tally, task: _Task) -> None:
        n_spectra = len(self._map.spectra) if task.source == self._source else 1
        hists = (tally.detector if task.source == self._source
                 else tally.monitors.setdefault(task.source, {}))
        counts = hists.get(task.period)
        if counts is None:
            counts = hists[task.period] = _Counts.zeros(n_spectra, self._channels.channels)
        tally.skipped += int(self._index.bin(counts.low, task.rows, task.tof, task.first,
                                             counts.high))

    def flush(self) -> None:
        """Nothing until close: a histogram is written whole, once."""

    def close(self) -> None:
        if not self.enabled:
            return
        if self._binner is not None:
            # what is still queued is binned by both threads, this one into its tally if it
            # has one (a second histogram only to drain the queue costs more than it saves)
            while self._job_tally is not None and self._error is None:
                task = self._binner.steal()
                if task is None:
                    break
                if not self._room_here(task):
                    self._binner.put(task)  # the binning thread's, then
                    break
                self._bin_here(task)
            finished, self._binner = self._binner.finish(), None  # the thread ends, always
            self._error = self._error or finished
        if self._error is not None:
            self.warnings.append(f"isis_histogram failed, the file has no histograms: "
                                 f"{self._error}")
            return
        tallies = [t for t in (self._tally, self._job_tally) if t is not None]
        self.counts["histogram_skipped_events"] += sum(t.skipped for t in tallies)
        seen = {p for t in tallies for h in (t.detector, *t.monitors.values()) for p in h}
        n_periods = min(self._max_periods, max(self._min_periods, max(seen, default=-1) + 1))
        self._write(self._counts, [t.detector for t in tallies], n_periods)
        for source, data in self._monitor_data.items():
            self._write(data, [t.monitors.get(source, {}) for t in tallies], n_periods)
        for dset in self._period_index:
            dset.resize(n_periods, axis=0)
            dset[...] = np.arange(1, n_periods + 1, dtype=np.int32)
        totals = self.book.totals
        end = self.stop_ns
        duration = (end - self.run.start_ns) / 1e9 if end is not None else 0.0
        irpb = np.zeros(VMS_INT_WORDS, np.int32)
        irpb[0] = round(max(duration, 0.0))
        irpb[6] = round(totals.raw_frames / duration) if duration > 0 else 0
        irpb[9], irpb[10] = totals.good_frames, totals.raw_frames
        irpb[21] = self.run.rb_number
        rrpb = np.zeros(VMS_REAL_WORDS, np.float32)
        rrpb[7], rrpb[8] = totals.good_uah, totals.raw_uah
        self._vms["IRPB"][...] = irpb
        self._vms["RRPB"][...] = rrpb
        self._vms["NPER"][0] = n_periods

    @staticmethod
    def _write(dset: h5py.Dataset, tallies: list[dict[int, _Counts]], n_periods: int) -> None:
        """Each period's counts, the tallies' added up, a chunk's spectra at a time (no copy
        of GBs at once)."""
        dset.resize(n_periods, axis=0)
        block = dset.chunks[1]
        for period in sorted({p for t in tallies for p in t if p < n_periods}):
            held = [t[period] for t in tallies if period in t]
            for first in range(0, dset.shape[1], block):
                rows = held[0].rows(first, first + block)
                for more in held[1:]:
                    rows = more.rows(first, first + block, into=rows)
                dset[period, first:first + block] = rows


@dataclass
class _Counts:
    """A histogram's counts: low, a byte a bin, and high, its 256s."""

    low: np.ndarray  # uint8 (spectra, channels), a channel a row in memory (channel_major)
    high: np.ndarray  # uint32, flat, one a bin, in low's order

    @classmethod
    def zeros(cls, spectra: int, channels: int) -> _Counts:
        return cls(channel_major(spectra, channels), np.zeros(spectra * channels, np.uint32))

    @property
    def high_bins(self) -> np.ndarray:
        """high as (spectra, channels), a view."""
        return self.high.reshape(self.low.T.shape).T

    def rows(self, first: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        """The counts of spectra first..stop as int32 (binning.wide_counts), added to
        `into` if given."""
        return wide_counts(self.low, self.high, first, stop, into)
