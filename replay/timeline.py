"""Everything a run sends after its start, in time order: frames (the pulses of all event
sources at one time: the detector banks' and each monitor's) and log updates, merged from
per-source iterators that each read their own part of the file as they go."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from replay.events import Pulse
from replay.logs import LogSeries, updates_in
from replay.run_file import RunFile

# a log update at a pulse's time goes first: the value holds from that instant
LOG_ORDER = -1


class LogUpdate(NamedTuple):
    time_ns: int
    order: int
    source: str
    topic_suffix: str
    value: np.ndarray


class Frame(NamedTuple):
    time_ns: int
    framelog_row: int | None  # its row of the framelog: the first detector group's pulse
    detector: list[Pulse]
    monitors: list[Pulse]


def _log_updates(series: LogSeries, lo_ns: int, hi_ns: int) -> Iterator[LogUpdate]:
    times, values = updates_in(series, lo_ns, hi_ns)
    for t, value in zip(times.tolist(), values, strict=True):
        yield LogUpdate(t, LOG_ORDER, series.name, series.topic_suffix, value)


def timeline(run: RunFile, lo_ns: int, hi_ns: int) -> Iterator[Frame | LogUpdate]:
    """The frames with lo_ns <= time < hi_ns, and each log's updates in that window with
    the last one before it (the value at the start), in time order (the file's clock)."""
    sources: list[Iterator[Pulse | LogUpdate]] = [
        g.pulses(lo_ns, hi_ns) for g in (*run.detectors, *run.monitors)]
    sources += [_log_updates(series, lo_ns, hi_ns) for series in run.logs]
    merged = heapq.merge(*sources, key=itemgetter(0, 1)) if len(sources) > 1 else sources[0]
    pending: Frame | None = None
    for item in merged:
        if isinstance(item, LogUpdate):
            if pending is not None:
                yield pending
                pending = None
            yield item
            continue
        if pending is not None and pending.time_ns != item.time_ns:
            yield pending
            pending = None
        if pending is None:
            pending = Frame(item.time_ns, None, [], [])
        if item.order == 0:
            pending = pending._replace(framelog_row=item.index)
        # detector groups come first in order; monitors after them
        (pending.detector if item.order < len(run.detectors) else pending.monitors).append(item)
    if pending is not None:
        yield pending
