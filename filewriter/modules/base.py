"""What every writer module offers the job."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from datastream.schemas import MalformedMessage
from filewriter.run_context import RunContext
from filewriter.timing import Window

# a time in the file is uint64 ns since the epoch, and int64 in numpy on the way there
MAX_TIME_NS = 2**63 - 1

NS_EPOCH_OFFSET = "1970-01-01T00:00:00Z"

# nexus_structure dtype names (kafka-to-nexus spellings) -> numpy; None: a string
DTYPES: dict[str, str | None] = {
    "string": None, "str": None,
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "int64": "i8", "uint64": "u8", "int": "i4", "uint": "u4", "short": "i2", "ushort": "u2",
    "long": "i8", "ulong": "u8", "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


# bounds of what a stream config may ask for: a nexus_structure comes from the network, and a
# row of a billion values (or a chunk of them) would take the writer's memory at the first
# message, not at open
MAX_ROW_VALUES = 1 << 24
MAX_STRING_BYTES = 1 << 16
MAX_CHUNK_ROWS = 1 << 24
MAX_CHUNK_BYTES = 1 << 30  # HDF5 refuses chunks of 4 GiB and more


def config_int(config: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer setting of a stream config, `default` when absent, ValueError outside
    [low, high] (the job is refused at open rather than failing at its first message)."""
    raw = config.get(key)
    if raw is None or raw == "" or raw == 0:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | str | float):
        raise ValueError(f"{key} must be an integer, not {raw!r}"[:200])
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"{key} {value} is out of range ({low} to {high})")
    return value


def row_values(shape: tuple[int, ...], what: str) -> int:
    """Values per row of `shape`, ValueError past MAX_ROW_VALUES or for a size under 1."""
    total = 1
    for n in shape:
        if n < 1:
            raise ValueError(f"{what}: sizes must be 1 or more, not {n}")
        total *= n
    if total > MAX_ROW_VALUES:
        raise ValueError(f"{what}: {total} values per row, more than {MAX_ROW_VALUES}")
    return total


def checked_time(t_ns: Any, what: str) -> int:
    """A message's time as an int the file can hold, else MalformedMessage: checked when the
    message comes, because a time that fails the uint64 conversion at the next flush would
    take every update buffered with it (and at close, the file's end)."""
    if isinstance(t_ns, float | np.floating) and not np.isfinite(t_ns):
        raise MalformedMessage(f"{what}: time {t_ns} is not finite")
    try:
        value = int(t_ns)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage(f"{what}: time {t_ns!r} is not a number"[:200]) from exc
    if not 0 <= value <= MAX_TIME_NS:
        raise MalformedMessage(f"{what}: time {value} ns is out of range (0 to {MAX_TIME_NS})")
    return value


def config_dtype(config: dict[str, Any], default: str = "double") -> np.dtype | None:
    """The value dtype a stream's config asks for (`dtype` or `type`); None for strings."""
    name = config.get("dtype") or config.get("type") or default
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}")
    numpy_name = DTYPES[name]
    return None if numpy_name is None else np.dtype(numpy_name)


def config_units(config: dict[str, Any]) -> str:
    return str(config.get("value_units") or config.get("units") or config.get("unit") or "")


def fixed_strings(values: list[str], width: int) -> tuple[np.ndarray, int]:
    """UTF-8, fixed width (SWMR files cannot take variable-length strings); also how many
    were cut to fit."""
    encoded = [v.encode("utf-8") for v in values]
    cut = sum(len(e) > width for e in encoded)
    return np.array([e[:width] for e in encoded], dtype=f"S{width}"), cut


@dataclass(frozen=True)
class Decoded:
    schema: str
    source: str
    data: Any


class WriterModule(ABC):
    accepts: frozenset[str] = frozenset()

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        """Creates every dataset the module will write: once a file is in SWMR mode, no new
        object can be added to it."""
        self.group = group
        self.config = config
        # what was written differently from how it came (out_of_order, truncated, …)
        self.counts: dict[str, int] = {}
        # what the module refused to write, for the job's answer (the file is still written)
        self.warnings: list[str] = []

    @abstractmethod
    def write(self, message: Decoded, window: Window) -> None:
        """Take one decoded message; write what belongs in the run window (maybe buffered)."""

    @abstractmethod
    def flush(self) -> None:
        """Write everything buffered to the file."""

    def close(self) -> None:
        self.flush()


class RunModule(WriterModule):
    """A module that writes run-level data (ISIS's frames, totals, histograms): it is given
    the run as well, may read sources besides its own on the same topic (`more_sources`),
    and is told the run's stop before it closes."""

    def __init__(self, group: h5py.Group, config: dict[str, Any], run: RunContext) -> None:
        super().__init__(group, config)
        self.run = run
        self.more_sources: tuple[str, ...] = ()
        self.stop_ns: int | None = None

    def set_stop(self, stop_ns: int | None) -> None:
        self.stop_ns = stop_ns


def appendable(group: h5py.Group, name: str, dtype: Any, shape_tail: tuple[int, ...] = (),
               chunk_rows: int = 1 << 16, **attrs: str) -> h5py.Dataset:
    row_bytes = np.dtype(dtype).itemsize * int(np.prod(shape_tail, dtype=np.int64))
    rows = min(max(1, chunk_rows), max(1, MAX_CHUNK_BYTES // max(1, row_bytes)))
    chunk = (rows, *shape_tail)
    dset = group.create_dataset(name, shape=(0, *shape_tail), maxshape=(None, *shape_tail),
                                dtype=dtype, chunks=chunk)
    for key, value in attrs.items():
        dset.attrs[key] = value
    return dset


def append(dset: h5py.Dataset, data: Any) -> None:
    n = len(data)
    if n == 0:
        return
    old = dset.shape[0]
    dset.resize(old + n, axis=0)
    dset[old:old + n] = data


class Cues:
    """cue_index / cue_timestamp_zero, as kafka-to-nexus writes them: a row every `interval`
    rows and its time, so a reader finds a time without reading the whole dataset.
    interval 0: never (the datasets are still there, empty)."""

    def __init__(self, group: h5py.Group, interval: int) -> None:
        self.interval = max(0, int(interval))
        self._index = appendable(group, "cue_index", np.int64, chunk_rows=1024)
        self._time = appendable(group, "cue_timestamp_zero", np.uint64, chunk_rows=1024,
                                units="ns", offset=NS_EPOCH_OFFSET)

    def rows(self, first_row: int, n_rows: int) -> np.ndarray:
        """The rows in [first_row, first_row + n_rows) that get a cue."""
        if not self.interval or n_rows <= 0:
            return np.empty(0, np.int64)
        start = -(-first_row // self.interval) * self.interval
        return np.arange(start, first_row + n_rows, self.interval, dtype=np.int64)

    def add(self, rows: np.ndarray, times_ns: np.ndarray) -> None:
        append(self._index, rows)
        append(self._time, np.asarray(times_ns, dtype=np.uint64))
