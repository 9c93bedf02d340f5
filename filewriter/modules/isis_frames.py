"""ISIS's frame-level data from an events topic's pu00 and ev44: `isis_framelog` (one value
per frame: framelog/proton_charge, period_log, good_frame_log, raw_frames, vetos, events_log)
and `isis_totals` (the entry's good_frames, raw_frames, proton_charge, proton_charge_raw,
total_counts, duration, collection_time and the IXperiods `periods` group).

Frames are counted by datastream.frames.FrameBook, so the file's totals are the DAE's
GOODFRAMES / RAWFRAMES / GOODUAH / TOTALUAMPS. The framelog has exactly one value per
event_time_zero entry of the source's NXevent_data, in the same order (Mantid matches
period_log to pulses by position): FrameEntries applies the EventWriter's rule for when a
message opens an entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from datastream.event_messages import Events
from datastream.frames import MAX_PERIODS_COUNTED, Frame, FrameBook
from datastream.repeats import RecentMessages
from datastream.schemas.pu00 import PulseMetadata
from filewriter.modules.base import (
    Decoded,
    RunModule,
    append,
    appendable,
    config_int,
)
from filewriter.run_context import RunContext
from filewriter.timing import Window, pulses_in_window

UAH = "uAh"
ONE_PULSE = np.ones(1, bool)  # the mask of a message of one pulse in the run (read only)
ONE_PULSE.flags.writeable = False


@dataclass
class Entry:
    """One frame as the framelog writes it; the counts are cumulative at this frame."""

    reference_time: int
    frame: Frame
    events: int
    good_frames: int
    raw_frames: int


class FrameEntries:
    """The frames of one events source, one entry per event_time_zero entry the
    EventWriter makes of the same messages: a pu00 opens its frame's entry, and an event
    pulse opens one unless its time is the entry just opened. Entries are handed out once
    the next one opens (or at close): a frame's events come in several chunks."""

    def __init__(self, start_ns: int) -> None:
        self.book = FrameBook(Window(start_ns, None))
        self.total_events = 0  # events of good frames (what the DAE counts)
        self.events_by_period: dict[int, int] = {}
        self._recent = RecentMessages()
        self._recent_pulses = RecentMessages()
        self._open: Entry | None = None
        self._done: list[Entry] = []

    def add(self, message: Decoded, window: Window) -> None:
        if self.book.window.stop_ns != window.stop_ns:
            self.book.set_stop(window.stop_ns)
        if message.schema == "pu00":
            self._pulse(message.data, window)
        else:
            self._events(message.data, window)

    def _pulse(self, pulse: PulseMetadata, window: Window) -> None:
        t = pulse.reference_time
        if not window.contains(t):
            return
        if self._open is not None and t == self._open.reference_time:
            # its events came first: the entry is there, the pu00 says what frame it was
            frame = self.book.add_pulse(pulse)
            if frame is not None:
                self._open.frame = frame
                self._stamp(self._open)
            return
        if self._recent_pulses.repeated(int(pulse.message_id), t):
            return
        frame = self.book.add_pulse(pulse) or Frame(
            t, int(pulse.period_number or 0), float(pulse.proton_charge or 0.0),
            int(pulse.vetos or 0))
        self._start(t, frame)

    def _events(self, ev: Events, window: Window) -> None:
        ref = np.asarray(ev.reference_time, dtype=np.int64)
        if len(ref) == 1:  # one frame a message (ISIS's): as below, with less numpy
            t = int(ref[0])
            if window.contains(t) and not self._recent.repeated(int(ev.message_id), t):
                (frame,) = self.book.frames_of(ref, ONE_PULSE, ev.period)
                self._add_events(t, len(ev.time_of_flight) - int(ev.reference_time_index[0]),
                                 frame)
            return
        mask = pulses_in_window(ref, window)
        if not mask.any() or self._recent.repeated(int(ev.message_id), int(ref[0])):
            return
        idx = np.asarray(ev.reference_time_index, dtype=np.int64)
        sizes = np.diff(np.append(idx, len(ev.time_of_flight)))
        frames = self.book.frames_of(ref, mask, ev.period)
        for t, n, frame in zip(ref[mask].tolist(), sizes[mask].tolist(), frames, strict=True):
            self._add_events(t, n, frame)

    def _add_events(self, t: int, n: int, frame: Frame) -> None:
        """n events of the pulse at t (its frame's)."""
        if self._open is None or t != self._open.reference_time:
            self._start(t, frame)
        self._open.events += n
        if frame.good:
            self.total_events += n
            self.events_by_period[frame.period] = self.events_by_period.get(frame.period, 0) + n

    def _start(self, t: int, frame: Frame) -> None:
        if self._open is not None:
            self._done.append(self._open)
        self._open = Entry(t, frame, 0, 0, 0)
        self._stamp(self._open)

    def _stamp(self, entry: Entry) -> None:
        entry.good_frames = self.book.totals.good_frames
        entry.raw_frames = self.book.totals.raw_frames

    def take(self, closing: bool = False) -> list[Entry]:
        """The entries complete so far (all of them when closing)."""
        if closing and self._open is not None:
            self._done.append(self._open)
            self._open = None
        done, self._done = self._done, []
        return done


# framelog's logs: name -> (dtype, units, the value of an entry)
FRAMELOG: dict[str, tuple[type, str, Any]] = {
    "proton_charge": (np.float32, UAH, lambda e: e.frame.proton_charge),
    # Mantid's period numbers are 1-based (LoadEventNexus checks period_log against
    # periods/number), the stream's from 0 (ISIS ADR 007)
    "period_log": (np.int32, "", lambda e: e.frame.period + 1),
    "good_frame_log": (np.int32, "", lambda e: e.good_frames),
    "raw_frames": (np.int32, "", lambda e: e.raw_frames),
    "vetos": (np.uint32, "", lambda e: e.frame.vetos),
    "events_log": (np.int32, "", lambda e: e.events),
}


def nxlog(parent: h5py.Group, name: str, dtype: type, units: str, start_iso: str,
          chunk_rows: int = 4096) -> tuple[h5py.Dataset, h5py.Dataset]:
    """An NXlog as LoadNexusLogs reads it: `time` float64 seconds after its `start`."""
    group = parent.create_group(name)
    group.attrs["NX_class"] = "NXlog"
    time = appendable(group, "time", np.float64, chunk_rows=chunk_rows, units="second",
                      start=start_iso)
    value = appendable(group, "value", dtype, chunk_rows=chunk_rows)
    if units:
        value.attrs["units"] = units
    return time, value


class FrameLogWriter(RunModule):
    """`isis_framelog`, in the entry's `framelog` group. Config: `topic`, `source` (the
    events source whose pu00 and ev44 it reads: the NXevent_data's), `chunk_size` (rows).
    Each log: `time` (float64 s after its `start`, the run start) and `value`, one row per
    frame: proton_charge (µAh in the frame), period_log (from 1), good_frame_log and
    raw_frames (good and raw frames of the run so far), vetos (the frame's veto mask),
    events_log (events in the frame)."""

    accepts = frozenset({"pu00", "ev44", "ev42"})

    def __init__(self, group: h5py.Group, config: dict[str, Any], run: RunContext) -> None:
        super().__init__(group, config, run)
        chunk = config_int(config, "chunk_size", 4096, 1, 1 << 20)
        self.frames = FrameEntries(run.start_ns)
        self._logs = {name: nxlog(group, name, dtype, units, run.start_iso, chunk)
                      for name, (dtype, units, _) in FRAMELOG.items()}

    def write(self, message: Decoded, window: Window) -> None:
        self.frames.add(message, window)

    def flush(self, closing: bool = False) -> None:
        entries = self.frames.take(closing)
        if not entries:
            return
        seconds = (np.array([e.reference_time for e in entries], np.int64)
                   - self.run.start_ns) / 1e9
        for name, (dtype, _, value) in FRAMELOG.items():
            time_ds, value_ds = self._logs[name]
            append(time_ds, seconds)
            append(value_ds, np.array([value(e) for e in entries], dtype))

    def close(self) -> None:
        self.flush(closing=True)


def _scalar(group: h5py.Group, name: str, dtype: type, units: str = "") -> h5py.Dataset:
    """A shape-(1,) dataset, filled at close (no dataset can be added in SWMR mode)."""
    dset = group.create_dataset(name, shape=(1,), dtype=dtype)
    if units:
        dset.attrs["units"] = units
    return dset


def _per_period(group: h5py.Group, name: str, dtype: Any, units: str = "") -> h5py.Dataset:
    dset = appendable(group, name, dtype, chunk_rows=64)
    if units:
        dset.attrs["units"] = units
    return dset


LABEL_WIDTH = 32


class TotalsWriter(RunModule):
    """`isis_totals`, in the entry. Config: `topic`, `source` (as isis_framelog's),
    `periods` (at least this many periods in `periods/`, default 1; more if frames of later
    periods come). At close: good_frames, raw_frames (int32), proton_charge (good µAh) and
    proton_charge_raw (float32, uAh), total_counts (events of good frames; int64: a long run
    passes 2^31), duration (float32 s, start to stop), collection_time (float32 s: the
    duration times the fraction of frames that were good: the time spent counting), and
    `periods` (IXperiods): number, and per period good_frames, raw_frames, proton_charge,
    proton_charge_raw, total_counts, labels, type (1: DAQ)."""

    accepts = frozenset({"pu00", "ev44", "ev42"})

    def __init__(self, group: h5py.Group, config: dict[str, Any], run: RunContext) -> None:
        super().__init__(group, config, run)
        self._min_periods = max(config_int(config, "periods", 1, 1, MAX_PERIODS_COUNTED),
                                run.periods)
        self.frames = FrameEntries(run.start_ns)
        self._last_frame_ns: int | None = None
        d = self._datasets = {
            "good_frames": _scalar(group, "good_frames", np.int32),
            "raw_frames": _scalar(group, "raw_frames", np.int32),
            "proton_charge": _scalar(group, "proton_charge", np.float32, UAH),
            "proton_charge_raw": _scalar(group, "proton_charge_raw", np.float32, UAH),
            "total_counts": _scalar(group, "total_counts", np.int64, "counts"),
            "duration": _scalar(group, "duration", np.float32, "second"),
            "collection_time": _scalar(group, "collection_time", np.float32, "second"),
        }
        periods = group.create_group("periods")
        periods.attrs["NX_class"] = "IXperiods"
        d["number"] = _scalar(periods, "number", np.int32)
        self._periods = {
            "good_frames": _per_period(periods, "good_frames", np.int32),
            "raw_frames": _per_period(periods, "raw_frames", np.int32),
            "proton_charge": _per_period(periods, "proton_charge", np.float32, UAH),
            "proton_charge_raw": _per_period(periods, "proton_charge_raw", np.float32, UAH),
            "total_counts": _per_period(periods, "total_counts", np.int64, "counts"),
            "labels": _per_period(periods, "labels", f"S{LABEL_WIDTH}"),
            "type": _per_period(periods, "type", np.int32),
        }

    def write(self, message: Decoded, window: Window) -> None:
        self.frames.add(message, window)
        if message.schema == "pu00":
            t = message.data.reference_time
            if window.contains(t):
                self._last_frame_ns = max(t, self._last_frame_ns or t)

    def flush(self) -> None:
        self.frames.take()  # the totals are the book's; the entries are not kept

    def close(self) -> None:
        totals = self.frames.book.totals
        d = self._datasets
        d["good_frames"][0] = totals.good_frames
        d["raw_frames"][0] = totals.raw_frames
        d["proton_charge"][0] = totals.good_uah
        d["proton_charge_raw"][0] = totals.raw_uah
        d["total_counts"][0] = self.frames.total_events
        end = self.stop_ns if self.stop_ns is not None else self._last_frame_ns
        duration = max(0.0, (end - self.run.start_ns) / 1e9) if end is not None else 0.0
        d["duration"][0] = duration
        d["collection_time"][0] = (duration * totals.good_frames / totals.raw_frames
                                   if totals.raw_frames else 0.0)
        number = max(self._min_periods, max(totals.periods, default=-1) + 1)
        number = min(number, MAX_PERIODS_COUNTED)
        d["number"][0] = number
        p = self._periods
        append(p["good_frames"], np.array(totals.per_period("good_frames", number), np.int32))
        append(p["raw_frames"], np.array(totals.per_period("raw_frames", number), np.int32))
        append(p["proton_charge"], np.array(totals.per_period("good_uah", number), np.float32))
        append(p["proton_charge_raw"],
               np.array(totals.per_period("raw_uah", number), np.float32))
        append(p["total_counts"], np.array(
            [self.frames.events_by_period.get(i, 0) for i in range(number)], np.int64))
        append(p["labels"], np.array([f"Period {i + 1}".encode() for i in range(number)],
                                     f"S{LABEL_WIDTH}"))
        append(p["type"], np.ones(number, np.int32))
