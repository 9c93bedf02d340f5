"""The file's NXlogs (selog/*/value_log, runlog/*, any NXlog under the entry) as series of
(time, value) to send as f144. Logs are small beside the events, so each is read whole.

The framelog is not among them: its values are the pulses' (pu00), which the writer turns
back into a framelog."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import h5py
import numpy as np

from replay.errors import ReplayError
from replay.units import attr_text, iso_to_ns, ns_per_unit, to_ns

log = logging.getLogger(__name__)

SAMPLE_ENV = "sampleEnv"
RUN_LOG = "runLog"
# groups whose NXlogs are not logs to send: the frame log comes from the pulses
SKIPPED_GROUPS = ("framelog",)
_EPOCH_LIKE_NS = 1e8 * 1e9


@dataclass(frozen=True)
class LogSeries:
    name: str  # the group name in the new file, and the f144 source name
    topic_suffix: str  # SAMPLE_ENV or RUN_LOG
    times_ns: np.ndarray  # int64, the file's clock, sorted
    values: np.ndarray  # one row per time; 2-D for array logs
    units: str

    @property
    def dtype_name(self) -> str:
        """The LogStream dtype (kafka-to-nexus's spelling) the writer stores values as."""
        kind = self.values.dtype
        if kind == np.float64:
            return "double"
        if kind == np.float32:
            return "float"
        return str(kind)

    @property
    def array_size(self) -> int:
        return self.values.shape[1] if self.values.ndim == 2 else 0


def find_logs(entry: h5py.Group, run_start_ns: int | None) -> tuple[list[LogSeries],
                                                                       list[str]]:
    """(the logs that can be sent, a warning for each NXlog that cannot)."""
    found: list[tuple[str, h5py.Group]] = []

    def visit(path: str, obj: object) -> None:
        if (isinstance(obj, h5py.Group) and attr_text(obj, "NX_class") == "NXlog"
                and not set(path.split("/")[:-1]) & set(SKIPPED_GROUPS)):
            found.append((path, obj))

    entry.visititems(visit)
    series: list[LogSeries] = []
    warnings: list[str] = []
    used: set[str] = set()
    for path, group in found:
        parts = path.split("/")
        # ISIS's selog/<block>/value_log: the block names the log
        name = parts[-2] if parts[-1] == "value_log" and len(parts) > 1 else parts[-1]
        unique, k = name, 2
        while unique in used:
            unique, k = f"{name}_{k}", k + 1
        try:
            item = read_log(group, unique, RUN_LOG if "runlog" in parts else SAMPLE_ENV,
                            run_start_ns)
        except ReplayError as exc:
            warnings.append(f"log {group.name} not replayed: {exc}")
            continue
        used.add(unique)
        series.append(item)
    return series, warnings


def read_log(group: h5py.Group, name: str, topic_suffix: str,
             run_start_ns: int | None) -> LogSeries:
    where = group.name
    time_ds, value_ds = group.get("time"), group.get("value")
    if not isinstance(time_ds, h5py.Dataset) or not isinstance(value_ds, h5py.Dataset):
        raise ReplayError("no time and value datasets")
    values = value_ds[()]
    if values.dtype.kind not in "iufb":
        raise ReplayError(f"values of type {values.dtype}: f144 carries numbers only")
    if values.dtype.kind == "b":
        values = values.astype(np.int8)
    if values.ndim == 0 or values.ndim > 2:
        raise ReplayError(f"values of shape {values.shape}")
    times = to_ns(np.atleast_1d(time_ds[()]), ns_per_unit(attr_text(time_ds, "units"),
                                                          f"{where}/time"), f"{where}/time")
    if len(times) != len(values):
        raise ReplayError(f"{len(times)} times for {len(values)} values")
    origin = attr_text(time_ds, "start") or attr_text(time_ds, "offset")
    if origin is not None:
        times = times + iso_to_ns(origin, f"{where}/time start")
    elif len(times) and abs(int(times[-1])) < _EPOCH_LIKE_NS:
        if run_start_ns is None:
            raise ReplayError("times after an unknown start (no start attribute and no "
                              "run start_time)")
        times = times + run_start_ns
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        # a NaN is a value a PV can have: sent as it is, only said
        log.info("%s holds non-finite values; they are sent as they are", where)
    order = np.argsort(times, kind="stable")
    return LogSeries(name, topic_suffix, times[order], values[order],
                     attr_text(value_ds, "units") or "")


def updates_in(series: LogSeries, lo_ns: int, hi_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows to send for the window [lo_ns, hi_ns): its own, and the last before it (the
    value the log had when the run began, as a forwarder sends it at connect)."""
    first, last = np.searchsorted(series.times_ns, [lo_ns, hi_ns], side="left")
    first = max(int(first) - 1, 0)
    return series.times_ns[first:last], series.values[first:last]
