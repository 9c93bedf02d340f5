"""ev44 -> NXevent_data (event_id, event_time_offset, event_time_zero, event_index)."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.schemas import MalformedMessage
from filewriter.modules.base import NS_EPOCH_OFFSET, Decoded, WriterModule, append, appendable
from filewriter.timing import Window, pulses_in_window

# write to HDF5 in blocks this large: few large writes are what the disk is fast at
FLUSH_EVENTS = 8 * 1024 * 1024


def decode_ev44(payload: bytes) -> Decoded:
    try:
        ev = deserialise_ev44(payload)
    except Exception as exc:
        raise MalformedMessage(f"corrupt ev44 message: {exc}") from exc
    return Decoded("ev44", ev.source_name, ev)


class EventWriter(WriterModule):
    accepts = frozenset({"ev44"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        chunk = int(config.get("chunk_size", 1 << 20))
        self._event_id = appendable(group, "event_id", np.int32, chunk_rows=chunk)
        self._offset = appendable(group, "event_time_offset", np.int32, chunk_rows=chunk,
                                  units="ns")
        self._time_zero = appendable(group, "event_time_zero", np.uint64, chunk_rows=1 << 14,
                                     units="ns", offset=NS_EPOCH_OFFSET)
        self._index = appendable(group, "event_index", np.int64, chunk_rows=1 << 14)
        self._buffers: dict[str, list[np.ndarray]] = {k: [] for k in ("id", "tof", "tz", "idx")}
        self._buffered = 0
        self._total = 0  # events accepted so far (written or buffered)
        self.pulses = 0

    @property
    def total_events(self) -> int:
        return self._total

    def write(self, message: Decoded, window: Window) -> None:
        ev = message.data
        ref = np.asarray(ev.reference_time, dtype=np.int64)
        idx = np.asarray(ev.reference_time_index, dtype=np.int64)
        tof = np.asarray(ev.time_of_flight)
        pix = np.asarray(ev.pixel_id)
        n = len(tof)
        if len(ref) != len(idx) or len(pix) != n:
            raise MalformedMessage("ev44: array lengths disagree")
        if len(idx) and (idx[0] < 0 or np.any(np.diff(idx) < 0) or idx[-1] > n):
            raise MalformedMessage("ev44: reference_time_index is not an ascending index")
        mask = pulses_in_window(ref, window)
        if not mask.any():
            return
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
        self._buffers["id"].append(pix.astype(np.int32, copy=False))
        self._buffers["tof"].append(tof.astype(np.int32, copy=False))
        self._buffers["tz"].append(ref[mask].astype(np.uint64))
        self._buffers["idx"].append(local.astype(np.int64))
        added = int(counts.sum())
        self._total += added
        self._buffered += added
        self.pulses += int(mask.sum())
        if self._buffered >= FLUSH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self._buffers["tz"]:
            return
        for key, dset in (("id", self._event_id), ("tof", self._offset),
                          ("tz", self._time_zero), ("idx", self._index)):
            chunks = self._buffers[key]
            append(dset, chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
            chunks.clear()
        self._buffered = 0
