"""The live reduction of a run: its detector events as I(d) per bank and over all banks, and
as an I(2θ, d) image; its beam monitors' events as I(λ). Each event converted on arrival by
its own pixel's DIFC (from the geometry: L1 + L2 and 2θ, as scippneutron converts a run
file, so the two agree bin by bin) and binned at once (liveview.reduction_binning).

The d binning is set at run time (the DSPACING setpoints, liveview.reduction_pvs) and checked
whole as the TCB setpoints are; a new binning empties the reduced histograms, which count the
run's events from then on (the TOF histogram is not rebinned into d: that would smear).

[liveview] keys, all optional: dspacing_min, dspacing_max (Å), dspacing_bins,
dspacing_log (true: equal dd/d); two_theta_bins (over the pixels' own 2θ range);
lambda_min, lambda_max (Å), lambda_bins (the monitors'); normalise_monitor (the monitor whose
counts divide I(d), by default the first); reduction_topic (the da00 messages' topic).
Pure but for its lock: numbers in, numbers out."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from datastream.geometry import (
    NEUTRON_MASS_KG,
    NS_PER_ANGSTROM_METRE,
    PLANCK_J_S,
    Geometry,
)
from liveview.reduction_binning import bin_dspacing, bin_scaled, guess, pack_rows

# bins of I(d) at most: each is a column of the I(2θ, d) image too, and a PV's element
MAX_D_BINS = 100_000
MAX_TWO_THETA_BINS = 10_000
# d-spacings (Å) a setpoint may ask for: far past any crystal's, short of float trouble
MAX_DSPACING = 1000.0
# h / m_n in Å·m per µs, as scippneutron's wavelength_from_tof computes its constant
ANGSTROM_METRE_PER_US = PLANCK_J_S / NEUTRON_MASS_KG * 1e4
ALL = "ALL"  # the name of I(d) over all banks


@dataclass(frozen=True)
class Bins:
    """Bin edges over [low, high): `bins` equal ones, or logarithmic (equal ratio, the
    dd/d of powder diffraction; low above 0). check() says what is wrong."""

    low: float
    high: float
    bins: int
    logarithmic: bool = False

    def check(self, what: str = "d-spacing", limit: int = MAX_D_BINS) -> Bins:
        for name, value in (("minimum", self.low), ("maximum", self.high)):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"the {what} {name} {value!r} is not a finite number")
        if self.low < 0 or self.high > MAX_DSPACING:
            raise ValueError(f"the {what} range {self.low:g} to {self.high:g} Å is outside 0 to "
                             f"{MAX_DSPACING:g} Å")
        if not self.low < self.high:
            raise ValueError(f"the {what} minimum {self.low:g} Å is not below the maximum "
                             f"{self.high:g} Å")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or not (
                1 <= self.bins <= limit):
            raise ValueError(f"{self.bins!r} {what} bins: a whole number from 1 to {limit:,}")
        if self.logarithmic and self.low <= 0:
            raise ValueError(f"logarithmic {what} bins need a minimum above 0 Å, not "
                             f"{self.low:g}")
        return self

    def edges(self) -> np.ndarray:
        """bins + 1 ascending edges, the first and last exactly low and high."""
        if self.logarithmic:
            edges = self.low * (self.high / self.low) ** (np.arange(self.bins + 1) / self.bins)
        else:
            edges = self.low + (self.high - self.low) * (np.arange(self.bins + 1) / self.bins)
        edges[0], edges[-1] = self.low, self.high
        return edges

    @property
    def step(self) -> float:
        """A bin's width (Å), or for logarithmic bins their dd/d: Mantid's Rebin step (whose
        negative step means dd/d)."""
        if self.logarithmic:
            return (self.high / self.low) ** (1 / self.bins) - 1
        return (self.high - self.low) / self.bins


@dataclass(frozen=True)
class ReductionSettings:
    dspacing: Bins = Bins(0.2, 5.0, 2000)
    two_theta_bins: int = 90
    wavelength: Bins = Bins(0.0, 10.0, 500)
    normalise_monitor: str | None = None  # None: the first monitor, if any
    topic: str | None = None  # the da00 messages'; None: the live view's default

    @classmethod
    def from_table(cls, table: dict[str, object], geometry: Geometry,
                   frame_ns: float) -> ReductionSettings:
        """From [liveview]; the wavelengths by default those of a whole frame at the nearest
        monitor (every monitor event then lands in a bin). ValueError says what is wrong."""
        def number(key: str, default: float) -> float:
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"[liveview] {key} {value!r}: a number")
            return float(value)

        def whole(key: str, default: int) -> int:
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"[liveview] {key} {value!r}: a whole number")
            return value

        def flag(key: str) -> bool:
            value = table.get(key, False)
            if not isinstance(value, bool):
                raise ValueError(f"[liveview] {key} {value!r}: true or false")
            return value

        d = cls.dspacing
        dspacing = Bins(number("dspacing_min", d.low), number("dspacing_max", d.high),
                        whole("dspacing_bins", d.bins), flag("dspacing_log"))
        paths = [geometry.monitor_path_m(m) for m in geometry.monitors]
        reach = frame_ns / NS_PER_ANGSTROM_METRE / min(paths) if paths and min(paths) > 0 \
            else cls.wavelength.high
        wavelength = Bins(number("lambda_min", 0.0), number("lambda_max", reach),
                          whole("lambda_bins", cls.wavelength.bins), flag("lambda_log"))
        angles = whole("two_theta_bins", cls.two_theta_bins)
        if not 1 <= angles <= MAX_TWO_THETA_BINS:
            raise ValueError(f"[liveview] two_theta_bins {angles}: 1 to {MAX_TWO_THETA_BINS:,}")
        names = [m.name for m in geometry.monitors]
        monitor = table.get("normalise_monitor")
        if monitor is not None and monitor not in names:
            raise ValueError(f"[liveview] normalise_monitor {monitor!r}: not a monitor of the "
                             f"geometry ({', '.join(names) or 'none'})")
        topic = table.get("reduction_topic")
        if topic is not None and (not isinstance(topic, str) or not topic):
            raise ValueError(f"[liveview] reduction_topic {topic!r}: a topic name")
        try:
            dspacing.check()
            wavelength.check("wavelength")
        except ValueError as exc:
            raise ValueError(f"[liveview] {exc}") from None
        return cls(dspacing, angles, wavelength,
                   str(monitor) if monitor else (names[0] if names else None),
                   str(topic) if topic else None)


@dataclass
class Reduced:
    """A copy of the reduction at one moment, for the publishers."""

    edges: np.ndarray  # d (Å), bins + 1
    banks: dict[str, np.ndarray]  # name -> counts per d bin; ALL last: over all banks
    image: np.ndarray  # (2θ bins, d bins)
    two_theta_edges_deg: np.ndarray
    wavelength_edges: np.ndarray  # Å
    monitors: dict[str, np.ndarray]  # name -> counts per λ bin
    bins: Bins
    events: int  # events binned into I(d) (within the d range)
    outside: int  # events of the banks' pixels outside the d range
    version: int  # changes with every add, reset and new binning
    monitor_counts: float | None = None  # the normalising monitor's (None: no monitor)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def centres(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


class Reduction:
    """Thread-safe: the consumer adds, the PV and da00 publishers read copies, a setpoint's
    put changes the binning."""

    def __init__(self, geometry: Geometry, settings: ReductionSettings) -> None:
        self.settings = settings
        ids = geometry.pixel_ids()
        self.first_pixel = int(ids.min())
        n = int(ids.max()) - self.first_pixel + 1
        rows = ids - self.first_pixel
        # per pixel by id: Å of d per ns of time of flight (d = tof / DIFC, tof in µs), its
        # bank and its 2θ row; pixels between the banks' ids belong to none (-1)
        self.inv_difc = np.zeros(n, np.float64)
        self.inv_difc[rows] = 1e-3 / geometry.difc_us_per_angstrom()
        self.bank_of = np.full(n, -1, np.int32)
        self.bank_of[rows] = np.repeat(np.arange(len(geometry.banks), dtype=np.int32),
                                       [b.rows * b.columns for b in geometry.banks])
        self.bank_names = [b.name for b in geometry.banks]
        angle = np.degrees(geometry.scattering_angle())
        low, high = float(angle.min()), float(angle.max())
        if high - low < 1e-9:  # one angle: a bin around it
            low, high = low - 0.5, high + 0.5
        # the last pixel's 2θ inside the last bin, not on its upper edge
        high = float(np.nextafter(high, np.inf))
        self.two_theta_edges_deg = np.linspace(low, high, settings.two_theta_bins + 1)
        self.angle_of = np.zeros(n, np.int32)
        self.angle_of[rows] = np.clip(
            np.searchsorted(self.two_theta_edges_deg, angle, side="right") - 1, 0,
            settings.two_theta_bins - 1)
        self.row_of = pack_rows(self.bank_of, self.angle_of)
        # per monitor by name: Å of wavelength per ns of time of flight
        self.monitor_factor = {m.name: ANGSTROM_METRE_PER_US / geometry.monitor_path_m(m)
                               * 1e-3 for m in geometry.monitors
                               if geometry.monitor_path_m(m) > 0}
        # the monitor whose counts divide I(d): the one named, else the first
        self.normalise_monitor = settings.normalise_monitor or next(iter(self.monitor_factor),
                                                                     None)
        self.wavelength = settings.wavelength
        self.wavelength_edges = self.wavelength.edges()
        self._wavelength_guess = guess(self.wavelength_edges, self.wavelength.logarithmic)
        self._lock = threading.Lock()
        self.version = 0
        self.set_bins(settings.dspacing)

    # -- changes --
    def set_bins(self, bins: Bins) -> None:
        """A new d binning (checked: ValueError says why not): the reduced histograms start
        again, empty, the monitors' too (a normalisation must cover the same events)."""
        bins.check()
        edges = bins.edges()
        with self._lock:
            self.bins, self.edges = bins, edges
            self._guess = guess(edges, bins.logarithmic)
            self._reset()

    def reset(self) -> None:
        """A new run, or the run read again from its start."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        n = self.bins.bins
        self.by_bank = np.zeros((len(self.bank_names), n), np.uint64)
        self.by_angle = np.zeros((len(self.two_theta_edges_deg) - 1, n), np.uint64)
        self.monitors = {name: np.zeros(self.wavelength.bins, np.uint64)
                         for name in self.monitor_factor}
        self.events = 0
        self.outside = 0
        self.no_pixel = 0
        self.version += 1

    # -- adding (the consumer) --
    def add(self, pixel_id: np.ndarray, tof: np.ndarray) -> int:
        """Detector events of good frames; returns how many were binned."""
        if len(tof) == 0:
            return 0
        with self._lock:
            no_pixel, outside = bin_dspacing(
                self.by_bank, self.by_angle, pixel_id, tof, self.first_pixel, self.inv_difc,
                self.row_of, self.edges, self._guess, self.bins.logarithmic)
            binned = len(tof) - no_pixel - outside
            self.events += binned
            self.outside += outside
            self.no_pixel += no_pixel
            self.version += 1
            return binned

    def add_monitor(self, name: str, tof: np.ndarray) -> bool:
        """A monitor's events of good frames; False for a source that is no monitor."""
        factor = self.monitor_factor.get(name)
        if factor is None:
            return False
        with self._lock:
            bin_scaled(self.monitors[name], tof, factor, self.wavelength_edges,
                       *self._wavelength_guess, self.wavelength.logarithmic)
            self.version += 1
        return True

    # -- reading (the publishers) --
    def snapshot(self) -> Reduced:
        with self._lock:
            banks = {name: self.by_bank[i].copy() for i, name in enumerate(self.bank_names)}
            banks[ALL] = self.by_bank.sum(axis=0, dtype=np.uint64)
            monitors = {name: counts.copy() for name, counts in self.monitors.items()}
            reduced = Reduced(self.edges.copy(), banks, self.by_angle.copy(),
                              self.two_theta_edges_deg, self.wavelength_edges, monitors,
                              self.bins, self.events, self.outside, self.version)
        name = self.normalise_monitor
        if name in monitors:
            reduced.monitor_counts = float(monitors[name].sum(dtype=np.uint64))
        return reduced


def normalised(counts: np.ndarray, by: float | None) -> np.ndarray:
    """counts / by, or zeros while `by` is nothing yet (no monitor counts, no charge): a
    viewer shows an empty curve, not infinities."""
    if not by or not math.isfinite(by):
        return np.zeros(len(counts), np.float64)
    return counts.astype(np.float64) / by
