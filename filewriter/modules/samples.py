"""se00 (sampled arrays, e.g. a fast ADC) and tdct (chopper top-dead-centre timestamps) ->
NXlog time series: every sample inside the run, each with its own time."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
from streaming_data_types.array_1d_se00 import deserialise_se00
from streaming_data_types.fbschemas.array_1d_se00.Location import Location
from streaming_data_types.timestamps_tdct import deserialise_tdct

from datastream.schemas import MalformedMessage, deserialised
from filewriter.modules.base import (
    MAX_CHUNK_ROWS,
    NS_EPOCH_OFFSET,
    Cues,
    Decoded,
    WriterModule,
    append,
    appendable,
    config_dtype,
    config_int,
    config_units,
)
from filewriter.timing import Window

# samples per flush before the buffer is written out whatever the flush interval
FLUSH_SAMPLES = 1 << 20


def _se00_samples(payload: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    msg = deserialise_se00(payload)
    values = np.asarray(msg.values)
    if msg.value_ts is not None:
        times = np.asarray(msg.value_ts, dtype=np.int64)
        if len(times) != len(values):
            raise MalformedMessage("se00: timestamps and values differ in length")
        return msg.name, times, values
    # the packet timestamp marks the first, middle or last sample
    n = len(values)
    delta = float(msg.sample_ts_delta)
    if not np.isfinite(delta) or abs(delta) * n >= 2**62:
        raise MalformedMessage(f"se00: sample interval {delta} ns gives no sample times")
    shift = {Location.Middle: (n - 1) / 2, Location.End: max(n - 1, 0)}.get(msg.ts_location, 0)
    times = msg.timestamp_unix_ns + np.round(
        (np.arange(n) - shift) * delta).astype(np.int64)
    return msg.name, times, values


def decode_se00(payload: bytes) -> Decoded:
    name, times, values = deserialised("se00", _se00_samples, payload)
    return Decoded("se00", name, (times, values))


def decode_tdct(payload: bytes) -> Decoded:
    msg = deserialised("tdct", deserialise_tdct, payload)
    times = np.asarray(msg.timestamps, dtype=np.int64)
    return Decoded("tdct", msg.name, (times, None))


class _TimedSamples(WriterModule):
    """Samples (time, maybe value) kept where start <= time < stop."""

    def __init__(self, group: h5py.Group, config: dict[str, Any], with_values: bool) -> None:
        super().__init__(group, config)
        chunk = config_int(config, "chunk_size", 1 << 16, 1, MAX_CHUNK_ROWS)
        self._values_ds: h5py.Dataset | None = None
        if with_values:
            dtype = config_dtype(config)
            if dtype is None:
                raise ValueError("se00 values are numeric; dtype 'string' is not possible")
            self._values_ds = appendable(group, "value", dtype, chunk_rows=chunk)
            if config_units(config):
                self._values_ds.attrs["units"] = config_units(config)
        self._time_ds = appendable(group, "time", np.uint64, chunk_rows=chunk, units="ns",
                                   offset=NS_EPOCH_OFFSET)
        self._cues = Cues(group, config_int(config, "cue_interval", 0, 0, 2**62))
        self._times: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0
        self._last_ns: int | None = None
        self.counts = {"out_of_order": 0}

    def write(self, message: Decoded, window: Window) -> None:
        times, values = message.data
        keep = times >= window.start_ns
        if window.stop_ns is not None:
            keep &= times < window.stop_ns
        if not keep.any():
            return
        times = times[keep]
        if (self._last_ns is not None and times[0] < self._last_ns) or np.any(np.diff(times) < 0):
            self.counts["out_of_order"] += 1
        self._last_ns = int(times[-1])
        self._times.append(times.astype(np.uint64))
        if self._values_ds is not None:
            self._values.append(np.asarray(values)[keep])
        self._buffered += len(times)
        if self._buffered >= FLUSH_SAMPLES:
            self.flush()

    def flush(self) -> None:
        if not self._times:
            return
        times = np.concatenate(self._times)
        append(self._time_ds, times)
        if self._values_ds is not None:
            append(self._values_ds, np.concatenate(self._values).astype(self._values_ds.dtype))
        rows = self._cues.rows(self._written, len(times))
        self._cues.add(rows, times[rows - self._written])
        self._written += len(times)
        self._times.clear()
        self._values.clear()
        self._buffered = 0


class SampleWriter(_TimedSamples):
    """se00. Config: `dtype` (default double), `value_units`, `cue_interval`, `chunk_size`."""

    accepts = frozenset({"se00"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config, with_values=True)


class TimestampWriter(_TimedSamples):
    """tdct: the timestamps alone, in `time`."""

    accepts = frozenset({"tdct"})

    def __init__(self, group: h5py.Group, config: dict[str, Any]) -> None:
        super().__init__(group, config, with_values=False)
