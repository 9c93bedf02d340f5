"""One NXevent_data group read as pulses, in chunks: the pulse axis (event_time_zero,
event_index) is read whole and checked before anything is sent; events are read a slice
of about CHUNK_EVENTS at a time, so a 1e9-event file never sits in memory.

Times come out as the schemas want them: the pulse time as int64 ns since the epoch (the
file's clock), times of flight as int32 ns, detector ids as int32."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np

from replay.errors import ReplayError
from replay.units import attr_text, iso_to_ns, ns_per_unit, to_ns

EVENT_FIELDS = ("event_id", "event_time_offset", "event_time_zero", "event_index")
# events per h5py read: large reads are what HDF5 is fast at, and 4 Mi events of two int32
# fields is 32 MiB however long the run
CHUNK_EVENTS = 1 << 22
INT32 = np.iinfo(np.int32)
# pulse times this large (in seconds) are since the epoch; smaller ones after the run start
_EPOCH_LIKE_S = 1e8


class Pulse(NamedTuple):
    time_ns: int  # the file's clock
    order: int  # the source's place: the merge's tie-break
    source: str
    time_of_flight: np.ndarray  # int32 ns
    pixel_id: np.ndarray  # int32
    index: int  # the pulse's place in its group (the framelog row of the first detector's)


def is_event_group(group: h5py.Group) -> bool:
    return all(isinstance(group.get(name), h5py.Dataset) for name in EVENT_FIELDS)


@dataclass
class EventGroup:
    """`source`: the stream's source name; `monitor`: a beam monitor's own stream."""

    group: h5py.Group
    source: str
    monitor: bool
    times_ns: np.ndarray  # each pulse's time, int64 ns, non-decreasing
    starts: np.ndarray  # each pulse's first event, int64
    ends: np.ndarray  # one past its last
    order: int = 0

    @classmethod
    def read(cls, group: h5py.Group, source: str, monitor: bool,
             run_start_ns: int | None) -> EventGroup:
        """The group with its pulse axis checked; ReplayError says what is wrong."""
        where = group.name
        ids, tofs = group["event_id"], group["event_time_offset"]
        if ids.ndim != 1 or tofs.ndim != 1 or ids.shape != tofs.shape:
            raise ReplayError(f"{where}: event_id ({ids.shape}) and event_time_offset "
                              f"({tofs.shape}) are not one event list")
        ns_per_unit(attr_text(tofs, "units"), f"{where}/event_time_offset")  # checked now
        n_events = ids.shape[0]
        times = pulse_times_ns(group["event_time_zero"], run_start_ns)
        index = group["event_index"][()]
        if index.ndim != 1 or len(index) != len(times):
            raise ReplayError(f"{where}: {len(index)} event_index entries for {len(times)} "
                              "event_time_zero entries")
        if index.dtype.kind not in "iu":
            raise ReplayError(f"{where}/event_index is {index.dtype}, not integers")
        starts = index.astype(np.int64)
        ends = np.append(starts[1:], n_events) if len(starts) else starts.copy()
        if len(starts) and (starts[0] < 0 or np.any(np.diff(starts) < 0)
                            or starts[-1] > n_events):
            bad = _first_bad_index(starts, n_events)
            raise ReplayError(f"{where}/event_index is inconsistent at pulse {bad} "
                              f"(value {starts[bad]}, {n_events} events): it must rise from "
                              "0 and stay within the events")
        if len(times) > 1 and np.any(np.diff(times) < 0):
            bad = int(np.flatnonzero(np.diff(times) < 0)[0]) + 1
            raise ReplayError(f"{where}/event_time_zero goes back in time at pulse {bad}: "
                              "pulses must be in time order")
        return cls(group, source, monitor, times, starts, ends)

    @property
    def events(self) -> int:
        return int(self.ends[-1] - self.starts[0]) if len(self.starts) else 0

    def pulse_range(self, lo_ns: int, hi_ns: int) -> tuple[int, int]:
        """The pulses with lo_ns <= time < hi_ns (the run window's rule)."""
        first, last = np.searchsorted(self.times_ns, [lo_ns, hi_ns], side="left")
        return int(first), int(last)

    def pulses(self, lo_ns: int, hi_ns: int,
               chunk_events: int | None = None) -> Iterator[Pulse]:
        """The pulses in [lo_ns, hi_ns), each a view into one chunk read from the file."""
        chunk_events = chunk_events or CHUNK_EVENTS
        first, last = self.pulse_range(lo_ns, hi_ns)
        p = first
        while p < last:
            a = int(self.starts[p])
            # as many whole pulses as fit in a chunk; at least one, however large
            q = int(np.searchsorted(self.ends, a + chunk_events, side="right"))
            q = min(max(q, p + 1), last)
            b = int(self.ends[q - 1])
            tof, ids = self.read_events(a, b)
            for i, t, s, e in zip(range(p, q), self.times_ns[p:q].tolist(),
                                  self.starts[p:q].tolist(), self.ends[p:q].tolist(),
                                  strict=True):
                yield Pulse(t, self.order, self.source, tof[s - a:e - a], ids[s - a:e - a], i)
            p = q

    def read_events(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Events a..b: (time of flight int32 ns, id int32), checked."""
        where = self.group.name
        tofs = self.group["event_time_offset"]
        factor = ns_per_unit(attr_text(tofs, "units"), f"{where}/event_time_offset")
        raw = tofs[a:b]
        if raw.dtype == np.int32 and factor == 1:
            tof = raw  # the common case of this project's and ESS files: as it is
        else:
            tof64 = to_ns(raw, factor, f"{where}/event_time_offset")
            tof = _int32(tof64, f"{where}/event_time_offset (ns)", a)
        ids = self.group["event_id"][a:b]
        if ids.dtype != np.int32:
            if ids.dtype.kind not in "iu":
                raise ReplayError(f"{where}/event_id is {ids.dtype}, not integers")
            ids = _int32(ids, f"{where}/event_id", a)
        return tof, ids


def _int32(values: np.ndarray, where: str, first: int) -> np.ndarray:
    if len(values) and (values.min() < INT32.min or values.max() > INT32.max):
        bad = int(np.flatnonzero((values < INT32.min) | (values > INT32.max))[0])
        raise ReplayError(f"{where}: value {values[bad]} of event {first + bad} does not fit "
                          "ev44's int32")
    return values.astype(np.int32)


def _first_bad_index(starts: np.ndarray, n_events: int) -> int:
    if starts[0] < 0:
        return 0
    falls = np.flatnonzero(np.diff(starts) < 0)
    if len(falls):
        return int(falls[0]) + 1
    return int(np.flatnonzero(starts > n_events)[0])


def pulse_times_ns(dataset: h5py.Dataset, run_start_ns: int | None) -> np.ndarray:
    """event_time_zero as int64 ns since the epoch: its units, plus its `offset` (ISO 8601)
    if it has one; without one, ns since the epoch, or seconds after the run's start."""
    where = dataset.name
    factor = ns_per_unit(attr_text(dataset, "units"), where)
    raw = dataset[()]
    if raw.ndim != 1:
        raise ReplayError(f"{where} is not a list of pulse times")
    times = to_ns(raw, factor, where)
    offset = attr_text(dataset, "offset") or attr_text(dataset, "start")
    if offset is not None:
        return times + iso_to_ns(offset, f"{where} offset")
    if len(times) and times[-1] < _EPOCH_LIKE_S * 1e9:
        if run_start_ns is None:
            raise ReplayError(f"{where} has no offset and the file no start_time: the pulse "
                              "times are after an unknown instant")
        return times + run_start_ns
    return times
