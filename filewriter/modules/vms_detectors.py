"""The detector table in isis_vms_compat, as the ICP writes it from DETECTOR.DAT: one value a
UDET entry, in UDET's order, of DELT (delay, µs), LEN2 (L2, m), CODE, TTHE (2θ, deg) and the
user tables UT01.. (UT01: φ, deg), NUSE of them. float32 and int32, as Mantid's NeXus reader
takes no other type for them (UpdateInstrumentFromFile reads UDET, LEN2, TTHE and UT01 as a
detector's position about the sample).

They come in isis_histogram's config as "detectors" ({"id", "delay_us", "l2_m", "code",
"two_theta_deg": a list each; "user": a list of columns}: ioc.detector_parameters makes it).
A config that is not that is refused with the reason (the file is written without them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

# UT01..UT99: the ICP's names have two digits
MAX_USER_TABLES = 99
MAX_DETECTORS = 1 << 26  # as isis_histogram's detector-id lookup
REALS = ("delay_us", "l2_m", "two_theta_deg")


@dataclass(frozen=True)
class VmsDetectors:
    ids: np.ndarray  # int64, unique
    delay_us: np.ndarray  # float32, each in ids' order
    l2_m: np.ndarray
    code: np.ndarray  # int32
    two_theta_deg: np.ndarray
    user: np.ndarray  # float32 (columns, detectors)


def _column(value: Any, name: str, n: int | None) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"detectors: {name} is not a list")
    if n is not None and len(value) != n:
        raise ValueError(f"detectors: {name} has {len(value)} values, id {n}")
    return value


def _integers(value: list[Any], name: str, low: int, high: int) -> np.ndarray:
    if not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
               for v in value):
        raise ValueError(f"detectors: {name} holds a value that is not a whole number in "
                         f"{low}..{high}")
    return np.asarray(value, np.int64)


def _reals(value: list[Any], name: str) -> np.ndarray:
    # a float32 in the file: finite there too (1e300 would be inf); compared as it is (NaN
    # is not below it, nor is an integer of 400 digits, which float() could not hold)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 3e38
               for v in value):
        raise ValueError(f"detectors: {name} holds a value that is not a finite number")
    return np.asarray(value, np.float64).astype(np.float32)


def parse(config: Any) -> VmsDetectors:
    """The config's "detectors", checked whole; ValueError says what is wrong."""
    if not isinstance(config, dict):
        raise ValueError("detectors: not an object of columns")
    ids = _column(config.get("id"), "id", None)
    if not 0 < len(ids) <= MAX_DETECTORS:
        raise ValueError(f"detectors: {len(ids):,} ids, not 1..{MAX_DETECTORS:,}")
    n = len(ids)
    id_array = _integers(ids, "id", -(2**31), 2**31 - 1)
    if len(np.unique(id_array)) != n:
        raise ValueError("detectors: an id has more than one line")
    user = _column(config.get("user", []), "user", None)
    if len(user) > MAX_USER_TABLES:
        raise ValueError(f"detectors: {len(user)} user columns, more than "
                         f"{MAX_USER_TABLES}")
    columns = [_reals(_column(c, f"user column {i}", n), f"user column {i}")
               for i, c in enumerate(user, start=1)]
    reals = {name: _reals(_column(config.get(name), name, n), name) for name in REALS}
    code = _integers(_column(config.get("code"), "code", n), "code", -(2**31), 2**31 - 1)
    return VmsDetectors(id_array, reals["delay_us"], reals["l2_m"], code.astype(np.int32),
                        reals["two_theta_deg"],
                        np.array(columns, np.float32).reshape(len(columns), n))


def write(vms: h5py.Group, udet: np.ndarray, detectors: VmsDetectors) -> list[str]:
    """The arrays in UDET's order; returns warnings (UDET's detectors the table has not: a
    dummy's line, code 0 and zeros, as they are written)."""
    order = np.argsort(detectors.ids)
    where = np.searchsorted(detectors.ids, udet, sorter=order)
    where = np.minimum(where, len(order) - 1)
    rows = order[where]
    found = detectors.ids[rows] == udet

    def aligned(values: np.ndarray) -> np.ndarray:
        return np.where(found, values[rows], 0).astype(values.dtype)

    vms.create_dataset("NUSE", data=np.array([len(detectors.user)], np.int32))
    vms.create_dataset("DELT", data=aligned(detectors.delay_us))
    vms.create_dataset("LEN2", data=aligned(detectors.l2_m))
    vms.create_dataset("CODE", data=aligned(detectors.code))
    vms.create_dataset("TTHE", data=aligned(detectors.two_theta_deg))
    for i, column in enumerate(detectors.user, start=1):
        vms.create_dataset(f"UT{i:02d}", data=aligned(column))
    missing = int((~found).sum())
    if not missing:
        return []
    first = udet[~found][:4].tolist()
    return [f"isis_histogram: {missing} of UDET's detectors (first {first}) have no line in "
            "the detector table: written as dummies (CODE 0, LEN2, TTHE 0)"]
