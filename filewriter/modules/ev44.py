"""ev44 and ev42 -> NXevent_data (event_id, event_time_offset, event_time_zero, event_index,
cue_index / cue_timestamp_zero), one event_time_zero entry per frame.

ISIS sends a frame as its pu00 and then its events in several ev44 chunks, all with the
frame's reference time; Mantid wants one entry per pulse (framelog/period_log is matched to
event_time_zero by position). So a pu00 opens its frame's entry (a vetoed frame keeps an
empty one: it is still a frame of the run), and a pulse whose time is the entry just opened
adds its events to it instead of opening another."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from datastream.event_messages import read_events
from datastream.repeats import RecentMessages
from datastream.schemas import MalformedMessage, schema_id
from datastream.schemas.pu00 import PulseMetadata, deserialise_pu00
from filewriter.modules.base import (
    MAX_CHUNK_ROWS,
    NS_EPOCH_OFFSET,
    Cues,
    Decoded,
    WriterModule,
    append,
    appendable,
    config_int,
)
from filewriter.timing import Window, pulses_in_window

# write to HDF5 in blocks this large: few large writes are what the disk is fast at
FLUSH_EVENTS = 8 * 1024 * 1024
CUE_INTERVAL = 100_000_000  # events; kafka-to-nexus's default


def decode_events(payload: bytes) -> Decoded:
    """ev44, or ev42 as one pulse (datastream.event_messages)."""
    ev = read_events(payload)
    if ev is None:  # DECODERS sends only ev44 and ev42 here
        raise MalformedMessage(f"not an event message: {schema_id(payload)}")
    return Decoded(schema_id(payload), ev.source_name, ev)


def decode_pulse(payload: bytes) -> Decoded:
    """pu00: a frame's period, proton charge and vetos, on the events topic."""
    pulse = deserialise_pu00(payload)
    return Decoded("pu00", pulse.source_name, pulse)


class EventWriter(WriterModule):
    """Config (kafka-to-nexus keys): `chunk_size` (events), `cue_interval` (events)."""

    accepts = frozenset({"ev44", "ev42", "pu00"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        chunk = config_int(config, "chunk_size", 1 << 20, 1, MAX_CHUNK_ROWS)
        self._event_id = appendable(group, "event_id", np.int32, chunk_rows=chunk)
        self._offset = appendable(group, "event_time_offset", np.int32, chunk_rows=chunk,
                                  units="ns")
        self._time_zero = appendable(group, "event_time_zero", np.uint64, chunk_rows=1 << 14,
                                     units="ns", offset=NS_EPOCH_OFFSET)
        self._index = appendable(group, "event_index", np.int64, chunk_rows=1 << 14)
        self._cues = Cues(group, config_int(config, "cue_interval", CUE_INTERVAL, 1, 2**62))
        self._written = 0  # events in the file
        self._last_pulse_ns: int | None = None
        self.counts = {"out_of_order": 0, "repeated": 0}
        self._recent = RecentMessages()
        # pu00 apart: a DAE may number a frame's pu00 and its first ev44 alike
        self._recent_pulses = RecentMessages()
        # the last entry written: a flush of events only (a frame's later chunks) still
        # finds the time of the pulse its cue rows lie in
        self._last_written: tuple[int, int] = (0, 0)
        # events wait in two buffers allocated once: copying into warm memory is what keeps
        # this near disk speed (a fresh array per flush spends its time in page faults)
        self._ids = np.empty(FLUSH_EVENTS, np.int32)
        self._tofs = np.empty(FLUSH_EVENTS, np.int32)
        self._pulses: dict[str, list[np.ndarray]] = {"tz": [], "idx": []}
        self._buffered = 0
        self._total = 0  # events accepted so far (written or buffered)
        self.pulses = 0

    @property
    def total_events(self) -> int:
        return self._total

    def write(self, message: Decoded, window: Window) -> None:
        if message.schema == "pu00":
            self._open_frame(message.data, window)
            return
        ev = message.data
        ref = np.asarray(ev.reference_time, dtype=np.int64)
        idx = np.asarray(ev.reference_time_index, dtype=np.int64)
        tof = np.asarray(ev.time_of_flight)
        pix = np.asarray(ev.pixel_id)
        n = len(tof)
        if len(ref) != len(idx) or len(pix) != n:
            raise MalformedMessage("ev44: array lengths disagree")
        if len(idx) and (idx[0] < 0 or idx[-1] > n
                         or (len(idx) > 1 and np.any(np.diff(idx) < 0))):
            raise MalformedMessage("ev44: reference_time_index is not an ascending index")
        mask = pulses_in_window(ref, window)
        if not mask.any():
            return
        if self._recent.repeated(int(ev.message_id), int(ref[0])):
            self.counts["repeated"] += 1
            return
        if len(ref) == 1:  # one frame a message (ISIS's): as below, with less numpy
            first = int(idx[0])
            tof, pix = tof[first:], pix[first:]
            kept, local, added = ref, np.array([self._total], np.int64), n - first
        else:
            kept, local, tof, pix = self._pulses_kept(ref, idx, tof, pix, mask)
            added = len(tof)
        last = int(kept[-1])
        if self._last_pulse_ns is not None and kept[0] < self._last_pulse_ns:
            self.counts["out_of_order"] += 1
        if len(kept) > 1:
            self.counts["out_of_order"] += int(np.count_nonzero(np.diff(kept) < 0))
        new = _new_pulses(kept, self._last_pulse_ns)
        if new is not None:  # a chunk of the frame already open: no entry of its own
            kept, local = kept[new], local[new]
        self._last_pulse_ns = last
        if self._buffered + added > len(self._ids):
            self.flush()
            if added > len(self._ids):  # one message larger than the buffer
                self._ids = np.empty(added, np.int32)
                self._tofs = np.empty(added, np.int32)
        self._ids[self._buffered:self._buffered + added] = pix
        self._tofs[self._buffered:self._buffered + added] = tof
        if len(kept):
            self._pulses["tz"].append(kept.astype(np.uint64))
            self._pulses["idx"].append(local.astype(np.int64))
        self._total += added
        self._buffered += added
        self.pulses += len(kept)

    def _pulses_kept(self, ref: np.ndarray, idx: np.ndarray, tof: np.ndarray, pix: np.ndarray,
                     mask: np.ndarray) -> tuple[np.ndarray, ...]:
        """The pulses `mask` keeps: their times, each one's first event in the file, and
        their events' times of flight and ids."""
        n = len(tof)
        ends = np.append(idx[1:], n)
        if mask.all():
            starts, counts = idx, ends - idx
            if len(idx) and idx[0] > 0:
                tof, pix = tof[idx[0]:], pix[idx[0]:]
        else:
            starts, stops = idx[mask], ends[mask]
            counts = stops - starts
            tof = np.concatenate([tof[s:e] for s, e in zip(starts, stops, strict=True)])
            pix = np.concatenate([pix[s:e] for s, e in zip(starts, stops, strict=True)])
        local = np.concatenate(([0], np.cumsum(counts)[:-1])) + self._total
        return ref[mask], local, tof, pix

    def _open_frame(self, pulse: PulseMetadata, window: Window) -> None:
        """A frame's entry, empty until its events come: ISIS's pu00 precedes them."""
        t = pulse.reference_time
        if not window.contains(t) or t == self._last_pulse_ns:
            return
        if self._recent_pulses.repeated(int(pulse.message_id), t):
            self.counts["repeated"] += 1
            return
        if self._last_pulse_ns is not None and t < self._last_pulse_ns:
            self.counts["out_of_order"] += 1
        self._last_pulse_ns = t
        self._pulses["tz"].append(np.array([t], np.uint64))
        self._pulses["idx"].append(np.array([self._total], np.int64))
        self.pulses += 1

    def flush(self) -> None:
        if not self._pulses["tz"] and not self._buffered:
            return
        append(self._event_id, self._ids[:self._buffered])
        append(self._offset, self._tofs[:self._buffered])
        if self._pulses["tz"]:
            tz = np.concatenate(self._pulses["tz"])
            idx = np.concatenate(self._pulses["idx"])
            append(self._time_zero, tz)
            append(self._index, idx)
            self._pulses["tz"].clear()
            self._pulses["idx"].clear()
        else:
            tz, idx = np.empty(0, np.uint64), np.empty(0, np.int64)
        rows = self._cues.rows(self._written, self._buffered)
        if len(rows):
            # each cue row lies in the last pulse starting at or before it
            last_idx, last_tz = self._last_written
            idx_all = np.concatenate(([last_idx], idx))
            tz_all = np.concatenate((np.array([last_tz], np.uint64), tz))
            pulse = np.searchsorted(idx_all, rows, side="right") - 1
            self._cues.add(rows, tz_all[pulse])
        if len(tz):
            self._last_written = (int(idx[-1]), int(tz[-1]))
        self._written += self._buffered
        self._buffered = 0


def _new_pulses(kept: np.ndarray, last_ns: int | None) -> np.ndarray | None:
    """Which pulses open an entry, None for all: not one whose time is the entry before
    (the last written, or the previous pulse of the message)."""
    if len(kept) == 1:  # the common case (one frame a message), without numpy's overhead
        return None if int(kept[0]) != last_ns else np.zeros(1, bool)
    new = np.empty(len(kept), bool)
    new[0] = last_ns is None or int(kept[0]) != last_ns
    new[1:] = kept[1:] != kept[:-1]
    return None if new.all() else new
