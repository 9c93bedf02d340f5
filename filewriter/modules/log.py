"""f142 / f144 -> NXlog (value, time), keeping the value the run started with; al00 alarms
and ep01 connection changes of the same source -> alarm_* and connection_status_* beside them;
minimum / maximum / average of numeric scalar values at close."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
from streaming_data_types.alarm_al00 import deserialise_al00
from streaming_data_types.epics_connection_ep01 import deserialise_ep01
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


def decode_al00(payload: bytes) -> Decoded:
    try:
        alarm = deserialise_al00(payload)
    except Exception as exc:
        raise MalformedMessage(f"corrupt al00 message: {exc}") from exc
    return Decoded("al00", alarm.source, (alarm.timestamp_ns, alarm.severity.name, alarm.message))


def decode_ep01(payload: bytes) -> Decoded:
    try:
        conn = deserialise_ep01(payload)
    except Exception as exc:
        raise MalformedMessage(f"corrupt ep01 message: {exc}") from exc
    return Decoded("ep01", conn.source_name, (conn.timestamp, conn.status.name))


class _EventLog:
    """A time series of text states beside the values (alarms, connection changes), under the
    same rules as the values: the state at start, the changes inside the run."""

    def __init__(self, group: h5py.Group, time_name: str, fields: tuple[str, ...]) -> None:
        self._group = group
        self._time_name = time_name
        self._fields = fields
        self._gate = LogGate()
        self._rows: list[tuple] = []
        self._datasets: dict[str, h5py.Dataset] = {}

    def offer(self, row: tuple, window: Window) -> None:
        self._rows.extend(self._gate.offer(row[0], row, window))

    def flush(self, closing: bool = False) -> None:
        if closing:
            self._rows.extend(self._gate.flush_pending())
        # created at close even when empty: every log of every file has the same shape
        if not self._rows and not (closing and not self._datasets):
            return
        if not self._datasets:
            self._datasets["time"] = appendable(self._group, self._time_name, np.uint64,
                                                chunk_rows=256, units="ns",
                                                offset=NS_EPOCH_OFFSET)
            for name in self._fields:
                self._datasets[name] = appendable(self._group, name, h5py.string_dtype(),
                                                  chunk_rows=256)
        if not self._rows:
            return
        append(self._datasets["time"], np.array([r[0] for r in self._rows], dtype=np.uint64))
        for i, name in enumerate(self._fields, start=1):
            append(self._datasets[name], [str(r[i]) for r in self._rows])
        self._rows.clear()


class LogWriter(WriterModule):
    accepts = frozenset({"f142", "f144", "al00", "ep01"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config)
        self._gate = LogGate()
        self._values: list[Any] = []
        self._times: list[int] = []
        self._value_ds: h5py.Dataset | None = None
        self._time_ds: h5py.Dataset | None = None
        self._width: int | None = None
        self.truncated = 0
        self._alarms = _EventLog(group, "alarm_time", ("alarm_severity", "alarm_message"))
        self._connection = _EventLog(group, "connection_status_time", ("connection_status",))
        self._stats: list[tuple[float, float, float, int]] = []  # min, max, sum, n per flush

    def write(self, message: Decoded, window: Window) -> None:
        if message.schema == "al00":
            self._alarms.offer(message.data, window)
            return
        if message.schema == "ep01":
            self._connection.offer(message.data, window)
            return
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

    def flush(self, closing: bool = False) -> None:
        self._alarms.flush(closing)
        self._connection.flush(closing)
        if not self._values:
            return
        if self._value_ds is None:
            self._create(self._values[0])
        rows = self._rows()
        append(self._value_ds, rows)
        append(self._time_ds, np.asarray(self._times, dtype=np.uint64))
        if self._width is None and self._value_ds.dtype.kind in "iuf":
            values = np.asarray(rows, dtype=np.float64)
            self._stats.append((values.min(), values.max(), values.sum(), len(values)))
        self._values.clear()
        self._times.clear()

    def close(self) -> None:
        # a PV that never changed during the run still records the value it had at the start
        for item in self._gate.flush_pending():
            self._buffer(item)
        self.flush(closing=True)
        if self._stats:
            units = self.config.get("units")
            count = sum(s[3] for s in self._stats)
            for name, value in (("minimum_value", min(s[0] for s in self._stats)),
                                ("maximum_value", max(s[1] for s in self._stats)),
                                ("average_value", sum(s[2] for s in self._stats) / count)):
                self.group[name] = value
                if units:
                    self.group[name].attrs["units"] = units
