"""What every writer module offers the job."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import h5py

from filewriter.timing import Window

NS_EPOCH_OFFSET = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Decoded:
    schema: str
    source: str
    data: Any


class WriterModule(ABC):
    accepts: frozenset[str] = frozenset()

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        self.group = group
        self.config = config

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
