"""`isis_log`: an f142 / f144 stream as an NXlog Mantid's LoadNexusLogs loads, for ISIS's
`runlog` (IXrunlog: runlog/<name> is the NXlog) and `selog` (IXselog: selog/<name> is an
IXseblock and its `value_log` the NXlog). The template places the groups; this module fills
the NXlog it is put in, as kafka-to-nexus's f144 module does, so either layout is the
template's choice.

What differs from the kafka-to-nexus layout (filewriter.modules.log), and why:
- `time` is float64 seconds after its `start` attribute (the run start, ISO 8601), units
  "second", as the framelog's (isis_frames): LoadNexusLogs skips a log timed in ns or ms,
  and cannot read uint64 or int64 times;
- `value` is float64 for any float, int32 for integers up to 32 bits (a 16-bit source too:
  one integer type for Mantid's TimeSeriesProperty<int>), and float64 for uint32, int64 and
  uint64 (LoadNexusLogs drops int64 and uint64 logs, and int32 would refuse a counter past
  2^31, as the run log's total counts pass; float64 holds integers exactly to 2^53);
  strings stay fixed-length bytes, which napi reads as the 2-D char data of a string log;
- no cue_index / cue_timestamp_zero (kafka-to-nexus's index into ns times).
The value at the run start (negative time), alarms and connection changes (alarm_* and
connection_status_*, timed as the values) and the units from un00 are the LogWriter's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from filewriter.modules.base import Decoded, RunModule, config_dtype
from filewriter.modules.log import LogWriter
from filewriter.run_context import RunContext
from filewriter.timing import Window

NS_PER_MS = 1_000_000


class SecondsAfter:
    """float64 seconds after `start`, the run start as RunContext.start_iso writes it (to the
    millisecond): times are counted from that same instant, so `start` + time is the update's
    time to the nanosecond whatever the start's sub-millisecond part."""

    dtype = np.float64

    def __init__(self, run: RunContext) -> None:
        self.start_ns = run.start_ns - run.start_ns % NS_PER_MS
        self.attrs = {"units": "second", "start": run.start_iso}

    def of(self, times_ns: Sequence[int]) -> np.ndarray:
        # the difference in int64 first: exact, where float64 ns since the epoch are not
        return (np.asarray(times_ns, dtype=np.int64) - self.start_ns) / 1e9


def mantid_dtype(config: dict[str, Any]) -> np.dtype | None:
    """The dtype a log's values are stored as for LoadNexusLogs; None for strings."""
    dtype = config_dtype(config)
    if dtype is None:
        return None
    if dtype.kind in "iu" and (dtype.itemsize < 4 or dtype == np.int32):
        return np.dtype(np.int32)
    return np.dtype(np.float64)


class IsisLogWriter(RunModule):
    """`isis_log`, in an NXlog group. Config: as f144's (`topic`, `source`, `dtype` or `type`,
    `array_size`, `value_units` or `units`, `chunk_size`, `string_size`), with `dtype` mapped
    to what Mantid loads (see the module's doc); `cue_interval` is not written. Units: the
    latest un00 of the source before the file closes, else the configured ones. An array log
    (array_size) is written 2-D as the f144 module writes it, which Mantid does not load as
    a time series."""

    accepts = LogWriter.accepts

    def __init__(self, group: h5py.Group, config: dict[str, Any], run: RunContext) -> None:
        super().__init__(group, config, run)
        self._log = LogWriter(group, config, times=SecondsAfter(run),
                              value_dtype=mantid_dtype, cues=False)
        self.counts = self._log.counts
        self.warnings = self._log.warnings
        nx_class = group.attrs.get("NX_class", "")
        if isinstance(nx_class, bytes):
            nx_class = nx_class.decode(errors="replace")
        if nx_class != "NXlog":
            # LoadNexusLogs opens only NXlog groups (value_log of an IXseblock too)
            self.warnings.append(f"{group.name}: isis_log writes an NXlog, but the group's "
                                 f"NX_class is {nx_class or 'missing'}: Mantid will not load it")

    def write(self, message: Decoded, window: Window) -> None:
        self._log.write(message, window)

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        self._log.close()
