"""Not tests: small NeXus event files of the three layouts replay reads, made with h5py:
this project's (what the file writer writes), ISIS's (µs offsets, second pulse times after
an offset) and kafka-to-nexus's (NXevent_data deep in the instrument, ns since the epoch)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

START_ISO = "2024-05-01T10:00:00.000Z"
START_NS = 1_714_557_600_000_000_000  # START_ISO
FRAME_NS = 100_000_000


def nx(group: h5py.Group, nx_class: str) -> h5py.Group:
    group.attrs["NX_class"] = nx_class
    return group


def pulses(n_pulses: int, seed: int, first_id: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pulse (time of flight ns int32, id int32); pulse 2 empty."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_pulses):
        n = 0 if k == 2 else int(rng.integers(3, 12))
        out.append((np.sort(rng.integers(0, 90_000_000, n)).astype(np.int32),
                    rng.integers(first_id, first_id + 100, n).astype(np.int32)))
    return out


def event_group(group: h5py.Group, times: np.ndarray, events: list, tof_dtype=np.int32,
                tof_scale: float = 1.0, tof_units: str = "ns") -> None:
    group.create_dataset("event_id", data=np.concatenate([e[1] for e in events]))
    tof = np.concatenate([e[0] for e in events]).astype(np.float64) / tof_scale
    group.create_dataset("event_time_offset", data=tof.astype(tof_dtype)).attrs["units"] = \
        tof_units
    group.create_dataset("event_index", data=np.concatenate(
        ([0], np.cumsum([len(e[0]) for e in events])[:-1])).astype(np.int64))
    group.create_dataset("event_time_zero", data=times)


def project_file(path: Path, n_pulses: int = 6) -> dict:
    """As the writer writes a run: start_time, detector_1_events (ns since the epoch), an
    event monitor, the framelog (period_log from 1), an SE block and a run log."""
    det, mon = pulses(n_pulses, 1), pulses(n_pulses, 2, first_id=100001)
    times = START_NS + 5_000_000 + FRAME_NS * np.arange(n_pulses, dtype=np.uint64)
    with h5py.File(path, "w") as f:
        e = nx(f.create_group("raw_data_1"), "NXentry")
        e["start_time"], e["end_time"] = START_ISO, "2024-05-01T10:00:01.000Z"
        e["title"], e["name"], e["run_number"] = "a title", "TST", np.int32(7)
        e["experiment_identifier"] = "1234"
        nx(e.create_group("user_1"), "NXuser")["name"] = "Ada"
        g = nx(e.create_group("detector_1_events"), "NXevent_data")
        event_group(g, times, det)
        g["event_time_zero"].attrs.update(units="ns", offset="1970-01-01T00:00:00Z")
        m = nx(e.create_group("monitor_1"), "NXmonitor")
        event_group(m, times, mon)
        m["event_time_zero"].attrs.update(units="ns", offset="1970-01-01T00:00:00Z")
        fl = nx(e.create_group("framelog"), "NXcollection")
        seconds = (times.astype(np.int64) - START_NS) / 1e9
        for name, values in (("period_log", np.arange(n_pulses) % 3 + 1),
                             ("proton_charge", 0.5 + 0.01 * np.arange(n_pulses)),
                             ("vetos", np.where(np.arange(n_pulses) == 4, 64, 0))):
            log = nx(fl.create_group(name), "NXlog")
            log.create_dataset("time", data=seconds).attrs.update(units="second",
                                                                  start=START_ISO)
            log["value"] = values
        se = nx(e.create_group("selog"), "IXselog")
        block = nx(nx(se.create_group("temp"), "IXseblock").create_group("value_log"),
                   "NXlog")
        block.create_dataset("time", data=[-1.0, 0.25, 0.35]).attrs.update(
            units="second", start=START_ISO)
        block.create_dataset("value", data=[290.0, 291.0, 292.5]).attrs["units"] = "K"
        rl = nx(e.create_group("runlog"), "IXrunlog")
        good = nx(rl.create_group("goodframes"), "NXlog")
        good.create_dataset("time", data=[0.0, 0.5]).attrs.update(units="second",
                                                                 start=START_ISO)
        good["value"] = np.array([0, 5], np.int32)
    return {"times": times.astype(np.int64), "det": det, "mon": mon}


def isis_file(path: Path, n_pulses: int = 5) -> dict:
    """ISIS's event file: float32 µs offsets, float64 seconds after a zone-less offset, a
    framelog with one frame more than the events hold (matched by time)."""
    det = pulses(n_pulses, 3)
    seconds = 0.02 + 0.1 * np.arange(n_pulses)
    with h5py.File(path, "w") as f:
        e = nx(f.create_group("raw_data_1"), "NXentry")
        e["start_time"] = np.array([b"2019-03-05T14:22:11"])
        e["run_number"] = np.array([12345], np.int32)
        e["name"] = np.array([b"WISH"])
        e["title"] = np.array([b"ISIS sample"])
        g = nx(e.create_group("detector_1_events"), "NXevent_data")
        event_group(g, seconds, det, np.float32, 1000.0, "microsecond")
        g["event_time_zero"].attrs.update(units="second", offset="2019-03-05T14:22:11")
        fl = nx(e.create_group("framelog"), "NXcollection")
        frame_s = np.concatenate(([0.0 + 0.02 - 0.1], seconds))  # a frame before the events
        log = nx(fl.create_group("period_log"), "NXlog")
        log.create_dataset("time", data=frame_s).attrs.update(units="second",
                                                              start="2019-03-05T14:22:11")
        log["value"] = np.array([1, *[2] * n_pulses], np.int32)
    start = 1_551_795_731_000_000_000  # 2019-03-05T14:22:11 read as UTC
    # what the float32 µs in the file say, in ns: the file's own numbers, not the ones made
    as_file = [(np.rint((tof / 1000).astype(np.float32).astype(np.float64) * 1000
                        ).astype(np.int32), ids) for tof, ids in det]
    return {"times": start + np.rint(seconds * 1e9).astype(np.int64), "det": as_file,
            "start": start}


def k2n_file(path: Path, n_pulses: int = 4) -> dict:
    """kafka-to-nexus: two banks' NXevent_data under instrument (uint32 ns offsets, uint64
    ns times with no offset attribute), a log timed in ns since the epoch."""
    a, b = pulses(n_pulses, 4), pulses(n_pulses, 5, first_id=1000)
    times = (START_NS + FRAME_NS * np.arange(n_pulses)).astype(np.uint64)
    with h5py.File(path, "w") as f:
        e = nx(f.create_group("entry"), "NXentry")
        inst = nx(e.create_group("instrument"), "NXinstrument")
        inst["name"] = "DREAM"
        for name, events in (("bank_a", a), ("bank_b", b)):
            g = nx(nx(inst.create_group(name), "NXdetector").create_group("events"),
                   "NXevent_data")
            event_group(g, times, events, np.uint32)
            g["event_time_zero"].attrs["units"] = "ns"
        speed = nx(nx(inst.create_group("chopper"), "NXdisk_chopper").create_group("speed"),
                   "NXlog")
        speed.create_dataset("time", data=START_NS + np.array([10, 150_000_000],
                                                              np.int64)).attrs["units"] = "ns"
        speed["value"] = np.array([14.0, 14.5])
    return {"times": times.astype(np.int64), "a": a, "b": b}
