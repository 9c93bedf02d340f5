"""An instrument's geometry, described once in iocBoot/<INST>/geometry.toml: the source, the
sample, the detector banks (pixel ids on a grid, where the grid is) and the beam monitors.
The run file's NeXus geometry, the simulated DAE's physics and the live view's banks all come
from here.

NeXus coordinates (McStas): the beam along +z, y up, the sample at the origin. A bank is a
flat grid of `rows` x `columns` pixels, `pixel_size_m` apart, facing the sample at
`distance_m` from it, its centre at scattering angle `two_theta_deg` in the horizontal
plane: position = R_y(2θ) · (T_z(distance) · (x, y, 0)). Pixel ids run along the rows from
`first_id`. Pure: a file in, numbers out."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# neutron time of flight over 1 m per Å of wavelength, in ns (h / m_n)
NS_PER_ANGSTROM_METRE = 252_778.0
# CODATA 2022, as scipp.constants holds them: the live reduction's d-spacing and wavelength
# then agree with scippneutron's conversion of the run file to float rounding (the rounded
# NS_PER_ANGSTROM_METRE above would put them 1e-6 apart, enough to move events across edges)
PLANCK_J_S = 6.62607015e-34
NEUTRON_MASS_KG = 1.67492750056e-27
# 2 m_n / h in µs per Å per metre, as scippneutron's dspacing_from_tof computes its constant
US_PER_ANGSTROM_METRE_2 = 2 * NEUTRON_MASS_KG / PLANCK_J_S * 1e-4


class GeometryError(ValueError):
    """The geometry file is wrong; the message says where."""


@dataclass(frozen=True)
class Bank:
    name: str
    first_id: int
    rows: int
    columns: int
    pixel_size_m: float
    distance_m: float
    two_theta_deg: float

    @property
    def ids(self) -> np.ndarray:
        """Pixel ids, shape (rows, columns)."""
        n = self.rows * self.columns
        return np.arange(self.first_id, self.first_id + n, dtype=np.int32).reshape(
            self.rows, self.columns)

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of each pixel in the bank's own frame, metres, shape (rows, columns)."""
        x = (np.arange(self.columns) - (self.columns - 1) / 2) * self.pixel_size_m
        y = (np.arange(self.rows) - (self.rows - 1) / 2) * self.pixel_size_m
        return np.broadcast_to(x, (self.rows, self.columns)), np.broadcast_to(
            y[:, None], (self.rows, self.columns))

    def positions(self) -> np.ndarray:
        """Pixel positions in the lab, metres, shape (rows * columns, 3)."""
        x, y = (a.ravel() for a in self.offsets())
        z = np.full_like(x, self.distance_m)
        angle = np.radians(self.two_theta_deg)
        c, s = np.cos(angle), np.sin(angle)
        return np.column_stack([c * x + s * z, y, -s * x + c * z])


@dataclass(frozen=True)
class Monitor:
    name: str
    id: int
    z_m: float  # along the beam; negative: upstream of the sample


@dataclass(frozen=True)
class Geometry:
    source_distance_m: float  # L1, moderator to sample
    banks: tuple[Bank, ...]
    monitors: tuple[Monitor, ...] = ()

    @property
    def source_position(self) -> np.ndarray:
        return np.array([0.0, 0.0, -self.source_distance_m])

    def pixel_ids(self) -> np.ndarray:
        return np.concatenate([b.ids.ravel() for b in self.banks])

    def pixel_positions(self) -> np.ndarray:
        return np.concatenate([b.positions() for b in self.banks])

    def two_theta(self) -> np.ndarray:
        """Scattering angle of each pixel (radians), in pixel_ids() order."""
        pos = self.pixel_positions()
        return np.arccos(pos[:, 2] / np.linalg.norm(pos, axis=1))

    def flight_path_m(self) -> np.ndarray:
        """L1 + L2 of each pixel, in pixel_ids() order."""
        return self.source_distance_m + np.linalg.norm(self.pixel_positions(), axis=1)

    def scattering_angle(self) -> np.ndarray:
        """2θ of each pixel (radians), in pixel_ids() order, as scippneutron computes it from
        the incident and scattered beams (Kahan's atan2 form, exact near 0 and 180 degrees
        where arccos loses digits): the same number to the last bit or two."""
        pos = self.pixel_positions()
        incident = np.array([0.0, 0.0, 1.0])  # source to sample, normalised
        scattered = pos / np.linalg.norm(pos, axis=1)[:, None]
        return 2 * np.arctan2(np.linalg.norm(incident - scattered, axis=1),
                              np.linalg.norm(incident + scattered, axis=1))

    def difc_us_per_angstrom(self) -> np.ndarray:
        """DIFC of each pixel, in pixel_ids() order: time of flight (µs) per Å of d-spacing,
        2 m_n / h · (L1 + L2) · sin θ, multiplied in scippneutron's order (d = tof / DIFC)."""
        return (US_PER_ANGSTROM_METRE_2 * self.flight_path_m()) * np.sin(
            self.scattering_angle() / 2)

    def monitor_path_m(self, monitor: Monitor) -> float:
        """Moderator to a beam monitor (metres): its λ is h·tof / (m_n · this)."""
        return self.source_distance_m + monitor.z_m


def _positive(table: dict, key: str, where: str) -> float:
    value = table.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise GeometryError(f"{where}: {key} must be a positive number")
    return float(value)


def _count(table: dict, key: str, where: str) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GeometryError(f"{where}: {key} must be a positive integer")
    return value


def _name(table: dict, where: str) -> str:
    name = table.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise GeometryError(f"{where}: name must be a plain identifier (it names a group)")
    return name


def load_geometry(path: Path) -> Geometry:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GeometryError(f"{path}: {exc}") from None
    banks = []
    for i, b in enumerate(doc.get("banks", [])):
        where = f"{path.name}: bank {i + 1}"
        name = _name(b, where)
        two_theta = b.get("two_theta_deg", 0.0)
        if not isinstance(two_theta, int | float) or not 0 <= two_theta <= 180:
            raise GeometryError(f"{where}: two_theta_deg must be within 0..180")
        banks.append(Bank(name, _count(b, "first_id", where), _count(b, "rows", where),
                          _count(b, "columns", where), _positive(b, "pixel_size_m", where),
                          _positive(b, "distance_m", where), float(two_theta)))
    if not banks:
        raise GeometryError(f"{path.name}: no [[banks]]")
    ids = np.concatenate([b.ids.ravel() for b in banks])
    if len(np.unique(ids)) != len(ids):
        raise GeometryError(f"{path.name}: banks share pixel ids")
    monitors = []
    for i, m in enumerate(doc.get("monitors", [])):
        where = f"{path.name}: monitor {i + 1}"
        name = _name(m, where)
        z = m.get("z_m")
        if not isinstance(z, int | float) or isinstance(z, bool):
            raise GeometryError(f"{where}: z_m must be a number")
        monitors.append(Monitor(name, _count(m, "id", where), float(z)))
    source = doc.get("source", {})
    return Geometry(_positive(source, "distance_m", f"{path.name}: [source]"), tuple(banks),
                    tuple(monitors))
