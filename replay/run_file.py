"""A NeXus event file opened for replay: its entry, run metadata, event groups (the
detector's and each monitor's), framelog and logs, from any of three layouts: this
project's (raw_data_1/detector_1_events, NXmonitor event streams, framelog), ISIS's event
files (the same names) and kafka-to-nexus's (NXevent_data anywhere under the NXentry)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from datastream.geometry import Geometry
from datastream.time_channels import TimeChannels
from replay.errors import ReplayError
from replay.events import EventGroup, is_event_group
from replay.frames import NO_FRAMELOG, FrameInfo, read_frames
from replay.geometry import geometry_from_file
from replay.logs import LogSeries, find_logs
from replay.units import attr_text, iso_to_ns

log = logging.getLogger(__name__)


@dataclass
class RunFile:
    path: Path
    h5: h5py.File
    entry: h5py.Group
    detectors: list[EventGroup]  # merged into the one detector stream
    monitors: list[EventGroup]  # each its own source
    frames: FrameInfo  # per pulse of detectors[0]
    logs: list[LogSeries]
    start_ns: int  # the run's start, the file's clock: --from/--to count from here
    stop_ns: int  # one past the last pulse at least
    instrument: str | None
    run_number: int | None
    title: str
    rb_number: str
    users: tuple[str, ...]
    geometry: Geometry | None
    warnings: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(g.events for g in (*self.detectors, *self.monitors))

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the run start carries --
    def time_channels(self) -> TimeChannels | None:
        """The run's TCB from the DAE's time channels or the detector histogram's edges."""
        for path, scale in (("instrument/dae/time_channels_1/time_of_flight_raw", None),
                            ("instrument/dae/time_channels_1/time_of_flight", None),
                            ("detector_1/time_of_flight", None)):
            ds = self.entry.get(path)
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or len(ds) < 2:
                continue
            factor = {"ns": 1.0, "nanosecond": 1.0, "microsecond": 1e3, "us": 1e3,
                      "µs": 1e3}.get((attr_text(ds, "units") or "").strip(), scale)
            if factor is None:
                continue
            edges = ds[()].astype(np.float64) * factor
            try:
                return _channels(edges)
            except ValueError:
                continue
        return None

    def periods(self) -> int:
        number = self.entry.get("periods/number")
        if isinstance(number, h5py.Dataset) and number.size == 1:
            return max(1, int(np.asarray(number[()]).reshape(-1)[0]))
        if self.frames.periods is not None and len(self.frames.periods):
            return int(self.frames.periods.max()) + 1
        return 1

    def spectrum_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(spectrum of each detector, detector ids): ICP's SPEC and UDET when the file has
        them, else the geometry's one spectrum a pixel."""
        spec, udet = self.entry.get("isis_vms_compat/SPEC"), self.entry.get(
            "isis_vms_compat/UDET")
        if isinstance(spec, h5py.Dataset) and isinstance(udet, h5py.Dataset) \
                and spec.shape == udet.shape and spec.ndim == 1 and len(spec):
            return spec[()].astype(np.int32), udet[()].astype(np.int32)
        if self.geometry is not None:
            ids = self.geometry.pixel_ids().astype(np.int32)
            return ids, ids
        return None


def _channels(edges: np.ndarray) -> TimeChannels:
    """Linear or logarithmic channels with these edges, else ValueError."""
    n = len(edges) - 1
    for logarithmic in (False, True):
        if logarithmic and edges[0] <= 0:
            continue
        tc = TimeChannels(float(edges[0]), float(edges[-1]), n, logarithmic)
        if np.allclose(tc.edges(), edges, rtol=1e-6, atol=1e-3):
            return tc
    raise ValueError("edges neither linear nor logarithmic")


def _text(group: h5py.Group, path: str) -> str | None:
    ds = group.get(path)
    if not isinstance(ds, h5py.Dataset):
        return None
    value = ds[()]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode(errors="replace").strip()
    return str(value).strip()


def _entry(h5: h5py.File) -> h5py.Group:
    groups = [g for g in h5.values() if isinstance(g, h5py.Group)]
    for g in groups:
        if attr_text(g, "NX_class") == "NXentry":
            return g
    for name in ("raw_data_1", "entry"):
        if isinstance(h5.get(name), h5py.Group):
            return h5[name]
    if groups:
        return groups[0]
    raise ReplayError("the file has no NXentry (no group at its root)")


def _source_of(group: h5py.Group) -> tuple[str, bool]:
    """(name, is a monitor): a monitor's events are in its NXmonitor or an NXevent_data in
    one, and its name is the source (as the DAE sends them)."""
    if attr_text(group, "NX_class") == "NXmonitor":
        return group.name.rsplit("/", 1)[-1], True
    parent = group.parent
    if attr_text(parent, "NX_class") == "NXmonitor":
        return parent.name.rsplit("/", 1)[-1], True
    return group.name.rsplit("/", 1)[-1], False


def open_run_file(path: Path) -> RunFile:
    """The file, checked; ReplayError says what makes it unplayable."""
    if not path.exists():
        raise ReplayError(f"{path}: no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ReplayError(f"{path}: not an HDF5 file h5py can open ({exc})") from exc
    try:
        return _read(path, h5)
    except ReplayError:
        h5.close()
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        h5.close()
        raise ReplayError(f"{path}: cannot read it: {exc}") from exc


def _read(path: Path, h5: h5py.File) -> RunFile:
    entry = _entry(h5)
    start_text = _text(entry, "start_time")
    declared_start = iso_to_ns(start_text, f"{entry.name}/start_time") if start_text else None
    found: list[h5py.Group] = []

    def visit(_: str, obj: object) -> None:
        # hard links are visited once; the template's bank links are soft and not followed
        if isinstance(obj, h5py.Group) and is_event_group(obj):
            found.append(obj)

    entry.visititems(visit)
    if not found:
        raise ReplayError(f"{path}: no NXevent_data (event_id, event_time_offset, "
                          f"event_time_zero, event_index) under {entry.name}")
    detectors: list[EventGroup] = []
    monitors: list[EventGroup] = []
    for group in found:
        source, monitor = _source_of(group)
        events = EventGroup.read(group, source, monitor, declared_start)
        (monitors if monitor else detectors).append(events)
    if not detectors:
        raise ReplayError(f"{path}: only monitor events, no detector NXevent_data")
    # the ISIS name first: the framelog is its pulse list's
    detectors.sort(key=lambda g: (g.group.name.rsplit("/", 1)[-1] != "detector_1_events",
                                  g.group.name))
    for order, group in enumerate([*detectors, *monitors]):
        group.order = order
    firsts = [int(g.times_ns[0]) for g in (*detectors, *monitors) if len(g.times_ns)]
    lasts = [int(g.times_ns[-1]) for g in (*detectors, *monitors) if len(g.times_ns)]
    if not firsts:
        raise ReplayError(f"{path}: the NXevent_data hold no pulses")
    # a start_time later than a pulse would cut that pulse out of the run: the earlier wins
    start_ns = min(declared_start, *firsts) if declared_start is not None else min(firsts)
    end_text = _text(entry, "end_time")
    stop_ns = max(lasts) + 1
    if end_text:
        stop_ns = max(stop_ns, iso_to_ns(end_text, f"{entry.name}/end_time"))
    frames = read_frames(entry, detectors[0].times_ns, declared_start)
    logs, warnings = find_logs(entry, declared_start)
    if frames is NO_FRAMELOG:
        log.info("%s has no framelog: pulses are sent with period 0 and no charge", path)
    run_number = _text(entry, "run_number")
    users = tuple(name for key in sorted(entry) if key.startswith("user_")
                  if (name := _text(entry, f"{key}/name")))
    return RunFile(
        path=path, h5=h5, entry=entry, detectors=detectors, monitors=monitors, frames=frames,
        logs=logs, start_ns=start_ns, stop_ns=stop_ns,
        instrument=_text(entry, "name") or _text(entry, "instrument/name") or None,
        run_number=int(run_number) if run_number and run_number.lstrip("-").isdigit()
        else None,
        title=_text(entry, "title") or "", rb_number=_text(entry, "experiment_identifier")
        or "", users=users, geometry=geometry_from_file(entry), warnings=warnings)
