"""f142 / f144 -> NXlog (value, time), keeping the value the run started with; al00 alarms
and ep01 connection changes of the same source -> alarm_* and connection_status_* beside them;
un00 (ISIS's units message) -> the value's units; minimum / maximum / average of numeric
scalar values at close. Times are kafka-to-nexus's (uint64 ns since the epoch) unless the
module using LogWriter gives another TimeAxis (isis_log: seconds after the run start)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import h5py
import numpy as np
from streaming_data_types.alarm_al00 import deserialise_al00
from streaming_data_types.epics_connection_ep01 import deserialise_ep01
from streaming_data_types.logdata_f144 import deserialise_f144

from datastream.schemas import deserialised
from datastream.schemas.f142 import LogData, deserialise_f142
from datastream.schemas.un00 import deserialise_un00
from filewriter.modules.base import (
    MAX_CHUNK_ROWS,
    MAX_ROW_VALUES,
    MAX_STRING_BYTES,
    NS_EPOCH_OFFSET,
    Cues,
    Decoded,
    WriterModule,
    append,
    appendable,
    checked_time,
    config_dtype,
    config_int,
    config_units,
    fixed_strings,
)
from filewriter.timing import LogGate, Window

# a PV's units (its EGU, which un00 carries as it is) that NeXus readers cannot parse, in the
# spelling they do (UDUNITS, as scippnexus reads a units attribute; Mantid takes the text as
# it is): ISIS's DAE PVs say "uA hour" (IBEX's spelling) and "events/s", which scippnexus
# loaded as dimensionless, with a warning for each
FILE_UNITS = {"uA hour": "uAh", "events/s": "counts/s"}


def decode_f142(payload: bytes) -> Decoded:
    log_data = deserialise_f142(payload)
    return Decoded("f142", log_data.source_name, log_data)


def decode_f144(payload: bytes) -> Decoded:
    msg = deserialised("f144", deserialise_f144, payload)
    return Decoded("f144", msg.source_name,
                   LogData(msg.source_name, msg.value, msg.timestamp_unix_ns))


def decode_al00(payload: bytes) -> Decoded:
    alarm = deserialised("al00", deserialise_al00, payload)
    return Decoded("al00", alarm.source, (alarm.timestamp_ns, alarm.severity.name, alarm.message))


def decode_ep01(payload: bytes) -> Decoded:
    conn = deserialised("ep01", deserialise_ep01, payload)
    return Decoded("ep01", conn.source_name, (conn.timestamp, conn.status.name))


def decode_un00(payload: bytes) -> Decoded:
    units = deserialise_un00(payload)  # every check a reader needs (datastream.schemas)
    return Decoded("un00", units.source_name, units)


class TimeAxis(Protocol):
    """How a log's times are stored: the dataset's dtype and attributes, and the values."""

    dtype: type
    attrs: dict[str, str]

    def of(self, times_ns: Sequence[int]) -> np.ndarray: ...


class EpochNs:
    """kafka-to-nexus's times: uint64 ns since the epoch."""

    dtype = np.uint64
    attrs = {"units": "ns", "offset": NS_EPOCH_OFFSET}

    def of(self, times_ns: Sequence[int]) -> np.ndarray:
        return np.asarray(times_ns, dtype=np.uint64)


EPOCH_NS = EpochNs()


def _timed_row(message: Decoded) -> tuple:
    """An alarm or connection row, its time checked (and a plain int)."""
    return (checked_time(message.data[0], message.schema), *message.data[1:])


STRING_WIDTH = 256  # bytes per string value unless the config says `string_size`
SEVERITY_WIDTH = 16
CONNECTION_WIDTH = 16


class _EventLog:
    """A time series of text states beside the values (alarms, connection changes), under the
    same rules as the values: the state at start, the changes inside the run. Its datasets
    exist from the start (a SWMR file takes no new objects), empty if nothing changed."""

    def __init__(self, group: h5py.Group, time_name: str, fields: dict[str, int],
                 times: TimeAxis) -> None:
        self._gate = LogGate()
        self._rows: list[tuple] = []
        self._times = times
        self._time = appendable(group, time_name, times.dtype, chunk_rows=256, **times.attrs)
        self._fields = [(appendable(group, name, f"S{width}", chunk_rows=256), width)
                        for name, width in fields.items()]

    def offer(self, row: tuple, window: Window) -> None:
        self._rows.extend(self._gate.offer(row[0], row, window))

    def flush(self, closing: bool = False) -> None:
        if closing:
            self._rows.extend(self._gate.flush_pending())
        if not self._rows:
            return
        append(self._time, self._times.of([r[0] for r in self._rows]))
        for i, (dset, width) in enumerate(self._fields, start=1):
            append(dset, fixed_strings([str(r[i]) for r in self._rows], width)[0])
        self._rows.clear()

    @property
    def out_of_order(self) -> int:
        return self._gate.out_of_order


def _fits_integers(values: np.ndarray, dtype: np.dtype) -> bool:
    if not len(values):
        return True
    info = np.iinfo(dtype)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        return False
    # compared as Python ints: exact for every integer dtype, and for floats in range
    low, high = values.min(), values.max()
    return bool(info.min <= low and high <= info.max)


class LogWriter(WriterModule):
    """Config (kafka-to-nexus keys): `dtype` or `type` (default double; "string" for text),
    `array_size` (values per update; default a scalar), `value_units` or `units` (the units
    until the stream's un00 says; also when it says the PV has none), `cue_interval` (rows;
    default never), `chunk_size` (rows), `string_size` (bytes).

    `times`, `value_dtype` and `cues` are for modules writing another layout with it
    (isis_log): how times are stored, the dtype a config's values are stored as, and
    whether the kafka-to-nexus cue_* index is written."""

    accepts = frozenset({"f142", "f144", "al00", "ep01", "un00"})

    def __init__(self, group: h5py.Group, config: dict[str, Any],
                 times: TimeAxis = EPOCH_NS,
                 value_dtype: Callable[[dict[str, Any]], np.dtype | None] = config_dtype,
                 cues: bool = True) -> None:
        super().__init__(group, config)
        self._times_axis = times
        self._dtype = value_dtype(config)
        self._width = config_int(config, "array_size", 0, 1, MAX_ROW_VALUES) or None
        self._string_size = config_int(config, "string_size", STRING_WIDTH, 1,
                                       MAX_STRING_BYTES)
        chunk = config_int(config, "chunk_size", 1024, 1, MAX_CHUNK_ROWS)
        units = config_units(config)
        units = FILE_UNITS.get(units, units)
        # the configured units; the stream's (un00, the latest before close) replace them
        self._config_units = units
        self._stream_units: str | None = None
        self._units_written = units
        self._gate = LogGate()
        self._values: list[Any] = []
        self._times: list[int] = []
        self._rows_written = 0
        self.counts = {"truncated": 0, "unconvertible": 0}
        if self._dtype is None:
            self._value_ds = appendable(group, "value", f"S{self._string_size}",
                                        chunk_rows=chunk)
        else:
            tail = (self._width,) if self._width else ()
            self._value_ds = appendable(group, "value", self._dtype, tail, chunk_rows=chunk)
        if units:
            self._value_ds.attrs["units"] = units
        self._time_ds = appendable(group, "time", times.dtype, chunk_rows=chunk,
                                   **times.attrs)
        self._cues = (Cues(group, config_int(config, "cue_interval", 0, 0, 2**62))
                      if cues else None)
        self._alarms = _EventLog(group, "alarm_time", {"alarm_severity": SEVERITY_WIDTH,
                                                       "alarm_message": STRING_WIDTH}, times)
        self._connection = _EventLog(group, "connection_status_time",
                                     {"connection_status": CONNECTION_WIDTH}, times)
        # minimum / maximum / average of numeric scalars, filled in at close
        self._stats: list[tuple[float, float, float, int]] = []
        self._stat_ds: dict[str, h5py.Dataset] = {}
        if self._dtype is not None and self._width is None:
            for name in ("minimum_value", "maximum_value", "average_value"):
                self._stat_ds[name] = group.create_dataset(name, data=np.nan)
                if units:
                    self._stat_ds[name].attrs["units"] = units

    def write(self, message: Decoded, window: Window) -> None:
        if message.schema == "al00":
            self._alarms.offer(_timed_row(message), window)
            return
        if message.schema == "ep01":
            self._connection.offer(_timed_row(message), window)
            return
        if message.schema == "un00":
            # not gated by the run window: units sent before the start (at connect) label
            # the run's values, and a change during the run relabels them all, as the file
            # has one units attribute
            units = message.data.units or None  # checked by deserialise_un00
            self._stream_units = FILE_UNITS.get(units, units)
            return
        data: LogData = message.data
        checked_time(data.timestamp_ns, message.schema)
        for item in self._gate.offer(int(data.timestamp_ns), data, window):
            self._buffer(item)

    def _buffer(self, data: LogData) -> None:
        value = self._convert(data.value)
        if value is None:
            self.counts["unconvertible"] += 1
            return
        self._values.append(value)
        self._times.append(data.timestamp_ns)

    def _convert(self, value: Any) -> Any:
        """The value as the dataset's row, or None if it cannot be one."""
        if self._dtype is None:
            return value if isinstance(value, str) else " ".join(map(str, np.ravel(value)))
        flat = np.ravel(value)
        if flat.dtype.kind in "USO":
            try:
                flat = flat.astype(np.float64)
            except (ValueError, TypeError, OverflowError):
                return None
        if flat.dtype.kind not in "biuf":
            return None  # complex, a date, raw bytes: no number of the dataset's type
        if self._dtype.kind in "iu" and not _fits_integers(flat, self._dtype):
            return None  # NaN, inf or past the type's range: numpy would store garbage
        wanted = self._width or 1
        if len(flat) != wanted:
            self.counts["truncated"] += 1
            flat = np.pad(flat[:wanted], (0, max(0, wanted - len(flat))))
        return flat if self._width else flat[0]

    def flush(self, closing: bool = False) -> None:
        self._alarms.flush(closing)
        self._connection.flush(closing)
        self._write_units()
        if not self._values:
            return
        if self._dtype is None:
            rows, cut = fixed_strings(self._values, self._string_size)
            self.counts["truncated"] += cut
        else:
            rows = np.array(self._values).astype(self._dtype, copy=False)
        times = self._times_axis.of(self._times)
        append(self._value_ds, rows)
        append(self._time_ds, times)
        if self._cues is not None:
            cue_rows = self._cues.rows(self._rows_written, len(times))
            self._cues.add(cue_rows, times[cue_rows - self._rows_written])
        self._rows_written += len(times)
        if self._stat_ds:
            values = rows.astype(np.float64)
            self._stats.append((values.min(), values.max(), values.sum(), len(values)))
        self._values.clear()
        self._times.clear()

    def _write_units(self) -> None:
        """The units attribute of value (and the statistics) as the latest un00 says, else
        as configured (each in a spelling NeXus readers parse, FILE_UNITS, as it came);
        rewritten only when that changes (an attribute's write is allowed in SWMR mode, but
        is metadata a live reader sees change)."""
        units = self._stream_units or self._config_units
        if units == self._units_written:
            return
        for dset in (self._value_ds, *self._stat_ds.values()):
            if units:
                dset.attrs["units"] = units
            elif "units" in dset.attrs:
                del dset.attrs["units"]
        self._units_written = units

    def close(self) -> None:
        # a PV that never changed during the run still records the value it had at the start
        for item in self._gate.flush_pending():
            self._buffer(item)
        self.flush(closing=True)
        self.counts["out_of_order"] = (self._gate.out_of_order + self._alarms.out_of_order
                                       + self._connection.out_of_order)
        if self._stats:
            count = sum(s[3] for s in self._stats)
            self._stat_ds["minimum_value"][()] = min(s[0] for s in self._stats)
            self._stat_ds["maximum_value"][()] = max(s[1] for s in self._stats)
            self._stat_ds["average_value"][()] = sum(s[2] for s in self._stats) / count
