"""What every writer module offers the job."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from filewriter.timing import Window

NS_EPOCH_OFFSET = "1970-01-01T00:00:00Z"

# nexus_structure dtype names (kafka-to-nexus spellings) -> numpy; None: a string
DTYPES: dict[str, str | None] = {
    "string": None, "str": None,
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "int64": "i8", "uint64": "u8", "int": "i4", "uint": "u4", "short": "i2", "ushort": "u2",
    "long": "i8", "ulong": "u8", "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


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

    @abstractmethod
    def write(self, message: Decoded, window: Window) -> None:
        """Take one decoded message; write what belongs in the run window (maybe buffered)."""

    @abstractmethod
    def flush(self) -> None:
        """Write everything buffered to the file."""

    def close(self) -> None:
        self.flush()


def appendable(group: h5py.Group, name: str, dtype: Any, shape_tail: tuple[int, ...] = (),
               chunk_rows: int = 1 << 16, **attrs: str) -> h5py.Dataset:
    chunk = (max(1, chunk_rows), *shape_tail)
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
