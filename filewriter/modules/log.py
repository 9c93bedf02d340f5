"""f142 / f144 -> NXlog (value, time), keeping the value the run started with."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
from streaming_data_types.logdata_f144 import deserialise_f144

from datastream.schemas import MalformedMessage
from datastream.schemas.f142 import LogData, deserialise_f142
from filewriter.modules.base import NS_EPOCH_OFFSET, Decoded, WriterModule, append, appendable
from filewriter.timing import LogGate, Window


def decode_f142(payload: bytes) -> Decoded:
    log_data = deserialise_f142(payload)
    return Decoded("f142", log_data.source_name, log_data)


def decode_f144(payload: bytes) -> Decoded:
    try:
        msg = deserialise_f144(payload)
    except Exception as exc:
        raise MalformedMessage(f"corrupt f144 message: {exc}") from exc
    return Decoded("f144", msg.source_name,
                   LogData(msg.source_name, msg.value, msg.timestamp_unix_ns))


class LogWriter(WriterModule):
    accepts = frozenset({"f142", "f144"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        self._gate = LogGate()
        self._values: list[Any] = []
        self._times: list[int] = []
        self._value_ds: h5py.Dataset | None = None
        self._time_ds: h5py.Dataset | None = None
        self._width: int | None = None
        self.truncated = 0

    def write(self, message: Decoded, window: Window) -> None:
        data: LogData = message.data
        for item in self._gate.offer(data.timestamp_ns, data, window):
            self._buffer(item)

    def _buffer(self, data: LogData) -> None:
        self._values.append(data.value)
        self._times.append(data.timestamp_ns)

    def _create(self, first: Any) -> None:
        units = self.config.get("units")
        if isinstance(first, str) or (isinstance(first, np.ndarray) and first.dtype.kind in "US"):
            dtype: Any = h5py.string_dtype()
            tail: tuple[int, ...] = ()
        else:
            arr = np.asarray(first)
            dtype = arr.dtype
            tail = () if arr.ndim == 0 else (arr.shape[0],)
            self._width = None if arr.ndim == 0 else arr.shape[0]
        self._value_ds = appendable(self.group, "value", dtype, tail, chunk_rows=1024)
        if units:
            self._value_ds.attrs["units"] = units
        self._time_ds = appendable(self.group, "time", np.uint64, chunk_rows=1024, units="ns",
                                   offset=NS_EPOCH_OFFSET)

    def _rows(self) -> Any:
        if self._value_ds is not None and self._value_ds.dtype.kind == "O":
            return [v if isinstance(v, str) else " ".join(map(str, np.ravel(v)))
                    for v in self._values]
        if self._width is None:
            return np.array([np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v).ravel()[0]
                             for v in self._values], dtype=self._value_ds.dtype)
        rows = np.zeros((len(self._values), self._width), dtype=self._value_ds.dtype)
        for i, v in enumerate(self._values):
            flat = np.ravel(v)[: self._width]
            if len(np.ravel(v)) != self._width:
                self.truncated += 1
            rows[i, : len(flat)] = flat
        return rows

    def flush(self) -> None:
        if not self._values:
            return
        if self._value_ds is None:
            self._create(self._values[0])
        append(self._value_ds, self._rows())
        append(self._time_ds, np.asarray(self._times, dtype=np.uint64))
        self._values.clear()
        self._times.clear()

    def close(self) -> None:
        # a PV that never changed during the run still records the value it had at the start
        for item in self._gate.flush_pending():
            self._buffer(item)
        self.flush()
