"""The instrument geometry back out of a file run control's template wrote (NXsource,
NXdetector banks of detector_number, x/y_pixel_offset and a distance-then-rotation chain,
NXmonitors with a position), so the replayed run's file is placed as the original was.
None for any other layout: a file's geometry is only taken when it is this one exactly."""

from __future__ import annotations

import h5py
import numpy as np

from datastream.geometry import Bank, Geometry, Monitor
from replay.units import attr_text


def _value(group: h5py.Group, path: str) -> float | None:
    ds = group.get(path)
    if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.dtype.kind not in "iuf":
        return None
    return float(np.asarray(ds[()]).reshape(-1)[0])


def _bank(group: h5py.Group) -> Bank | None:
    ids, x, y = (group.get(n) for n in ("detector_number", "x_pixel_offset",
                                         "y_pixel_offset"))
    if not all(isinstance(d, h5py.Dataset) and d.ndim == 2 for d in (ids, x, y)):
        return None
    ids, x, y = ids[()], x[()], y[()]
    rows, columns = ids.shape
    distance = _value(group, "transformations/distance")
    two_theta = _value(group, "transformations/rotation")
    if distance is None or two_theta is None or ids.size == 0:
        return None
    if columns > 1:
        pitch = float(x[0, 1] - x[0, 0])
    elif rows > 1:
        pitch = float(y[1, 0] - y[0, 0])
    else:
        return None
    bank = Bank(group.name.rsplit("/", 1)[-1], int(ids[0, 0]), rows, columns, pitch,
                distance, two_theta)
    # only a bank the template would write again as it is
    if not np.array_equal(bank.ids, ids) or not np.allclose(bank.offsets()[0], x):
        return None
    return bank


def geometry_from_file(entry: h5py.Group) -> Geometry | None:
    instrument = entry.get("instrument")
    if not isinstance(instrument, h5py.Group):
        return None
    source_distance = _value(instrument, "source/transformations/position")
    if source_distance is None:
        return None
    banks: list[Bank] = []
    for child in instrument.values():
        if isinstance(child, h5py.Group) and attr_text(child, "NX_class") == "NXdetector":
            bank = _bank(child)
            if bank is None:
                return None
            banks.append(bank)
    monitors: list[Monitor] = []
    for name, child in entry.items():
        if isinstance(child, h5py.Group) and attr_text(child, "NX_class") == "NXmonitor":
            number = _value(child, "detector_number")
            z = _value(child, "transformations/position")
            if number is None or z is None:
                continue  # a histogram monitor of isis_histogram's: not the geometry's
            monitors.append(Monitor(name, int(number), z))
    if not banks:
        return None
    return Geometry(source_distance, tuple(banks), tuple(monitors))
