"""The live reduction's PVs, over PVA, under <prefix>LIVE: (liveview.reduction):

- `DSPACING:<BANK>:X` the d bin centres (Å), `:XE` their edges (one more), `:Y` the counts
  per bin, for each bank of the geometry (its name in capitals) and `ALL` (over all banks);
  `:Y_PER_MONITOR` the counts per count of the normalising monitor (its I(λ) summed) and
  `:Y_PER_UAH` per µA·h of good proton charge (GOODUAH): zeros until there is any.
- `DSPACING:IMAGE`: I(2θ, d) as an NTNDArray, as `IMAGE` is (a row per 2θ bin, the lowest
  angle first; a column per d bin, as `:X`); `DSPACING:IMAGE:TWO_THETA` the rows' 2θ
  centres (degrees) and `:TWO_THETA_E` their edges.
- `DSPACING:MIN:SP`, `DSPACING:MAX:SP` (Å), `DSPACING:BINS:SP`, `DSPACING:LOG:SP` (0 equal
  widths, 1 equal dd/d): the binning, checked whole as the TCB setpoints are and refused with
  the reason (not finite, minimum not below maximum, bins not 1..100,000, logarithmic from
  0). A new binning empties the reduced histograms: they count the run's events from then.
  `DSPACING:STEP` reads back the bins' width (Å), or their dd/d when logarithmic (what
  Mantid's Rebin takes as a negative step). `DSPACING:EVENTS` the events in I(d), `DSPACING:OUTSIDE`
  the banks' events outside the d range.
- `LAMBDA:<MONITOR>:X`, `:XE`, `:Y`: each beam monitor's I(λ) (Å), of the run's good frames.

Posted by the publisher (update()) when the counts changed."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from p4p.nt import NTNDArray, NTScalar
from p4p.server.thread import SharedPV

from liveview.array_pvs import _Setpoint
from liveview.reduction import MAX_D_BINS, MAX_DSPACING, Reduced, Reduction, normalised


def _array(unit: str, value: np.ndarray | None = None) -> SharedPV:
    return SharedPV(nt=NTScalar("ad", display=True),
                    initial={"value": np.zeros(1) if value is None else value,
                             "display.units": unit})


def _scalar(code: str, unit: str, value: float) -> SharedPV:
    return SharedPV(nt=NTScalar(code, display=True),
                    initial={"value": value, "display.units": unit})


def image_value(image: np.ndarray) -> np.ndarray:
    """I(2θ, d) as the NTNDArray shows it: uint32 (as IMAGE), clipped, not wrapped."""
    return np.minimum(image, np.iinfo(np.uint32).max).astype(np.uint32)


class ReductionPVs:
    def __init__(self, prefix: str, reduction: Reduction) -> None:
        """`prefix`: <prefix>LIVE:."""
        self.prefix, self.reduction = prefix, reduction
        reduced = reduction.snapshot()
        self._pvs: dict[str, SharedPV] = {}
        for bank in reduced.banks:
            for kind, unit in (("X", "Angstrom"), ("XE", "Angstrom"), ("Y", "counts"),
                               ("Y_PER_MONITOR", "counts/monitor count"),
                               ("Y_PER_UAH", "counts/uAh")):
                self._pvs[f"DSPACING:{bank.upper()}:{kind}"] = _array(unit)
        self._pvs["DSPACING:IMAGE"] = SharedPV(nt=NTNDArray(),
                                               initial=image_value(reduced.image))
        self._pvs["DSPACING:IMAGE:TWO_THETA"] = _array("deg")
        self._pvs["DSPACING:IMAGE:TWO_THETA_E"] = _array("deg")
        self._pvs["DSPACING:STEP"] = _scalar("d", "", 0.0)
        self._pvs["DSPACING:EVENTS"] = _scalar("l", "events", 0)
        self._pvs["DSPACING:OUTSIDE"] = _scalar("l", "events", 0)
        for monitor in reduced.monitors:
            for kind, unit in (("X", "Angstrom"), ("XE", "Angstrom"), ("Y", "counts")):
                self._pvs[f"LAMBDA:{monitor.upper()}:{kind}"] = _array(unit)
        bins = reduced.bins
        self.setpoints = {
            "DSPACING:MIN:SP": self._setpoint("low", bins.low, "d", "Angstrom"),
            "DSPACING:MAX:SP": self._setpoint("high", bins.high, "d", "Angstrom"),
            "DSPACING:BINS:SP": self._setpoint("bins", bins.bins, "i", ""),
            "DSPACING:LOG:SP": self._setpoint("logarithmic", int(bins.logarithmic), "i", "")}
        self._posted_version = -1
        self._posted_bins: Any = None
        self._posted_uah: float | None = None
        self.update(0.0, reduced)

    def _setpoint(self, field: str, initial: float, code: str, unit: str) -> SharedPV:
        low, high = {"bins": (1, MAX_D_BINS), "logarithmic": (0, 1)}.get(
            field, (0.0, MAX_DSPACING))

        def apply(value: float) -> None:
            if field in ("bins", "logarithmic") and value != int(value):
                raise ValueError(f"{field} must be a whole number")
            new = dataclasses.replace(self.reduction.bins, **{field: (
                bool(value) if field == "logarithmic" else int(value) if field == "bins"
                else value)})
            self.reduction.set_bins(new)  # checked whole: a ValueError says why not

        return SharedPV(nt=NTScalar(code, display=True),
                        handler=_Setpoint(apply, low, high, unit),
                        initial={"value": initial, "display.units": unit})

    def static(self) -> dict[str, SharedPV]:
        return {self.prefix + name: pv for name, pv in (self._pvs | self.setpoints).items()}

    def update(self, good_uah: float, reduced: Reduced | None = None) -> Reduced:
        """Post what changed since the last update; returns the reduction as posted."""
        reduced = reduced or self.reduction.snapshot()
        axes = reduced.bins != self._posted_bins
        if axes:
            self._posted_bins = reduced.bins
            centres, edges = reduced.centres, reduced.edges
            for bank in reduced.banks:
                self._pvs[f"DSPACING:{bank.upper()}:X"].post(centres)
                self._pvs[f"DSPACING:{bank.upper()}:XE"].post(edges)
            step = reduced.bins.step
            self._pvs["DSPACING:STEP"].post(step)
            angles = reduced.two_theta_edges_deg
            self._pvs["DSPACING:IMAGE:TWO_THETA"].post((angles[:-1] + angles[1:]) / 2)
            self._pvs["DSPACING:IMAGE:TWO_THETA_E"].post(angles)
            lam = reduced.wavelength_edges
            for monitor in reduced.monitors:
                self._pvs[f"LAMBDA:{monitor.upper()}:X"].post((lam[:-1] + lam[1:]) / 2)
                self._pvs[f"LAMBDA:{monitor.upper()}:XE"].post(lam)
            for name, value in (("DSPACING:MIN:SP", reduced.bins.low),
                                ("DSPACING:MAX:SP", reduced.bins.high),
                                ("DSPACING:BINS:SP", reduced.bins.bins),
                                ("DSPACING:LOG:SP", int(reduced.bins.logarithmic))):
                self.setpoints[name].post(value)  # a config default or another client's
        counts = axes or reduced.version != self._posted_version
        if counts or good_uah != self._posted_uah:
            for bank, y in reduced.banks.items():
                if counts:
                    self._pvs[f"DSPACING:{bank.upper()}:Y"].post(y.astype(np.float64))
                    self._pvs[f"DSPACING:{bank.upper()}:Y_PER_MONITOR"].post(
                        normalised(y, reduced.monitor_counts))
                self._pvs[f"DSPACING:{bank.upper()}:Y_PER_UAH"].post(normalised(y, good_uah))
        if counts:
            self._posted_version = reduced.version
            self._pvs["DSPACING:IMAGE"].post(image_value(reduced.image))
            self._pvs["DSPACING:EVENTS"].post(reduced.events)
            self._pvs["DSPACING:OUTSIDE"].post(reduced.outside)
            for monitor, y in reduced.monitors.items():
                self._pvs[f"LAMBDA:{monitor.upper()}:Y"].post(y.astype(np.float64))
        self._posted_uah = good_uah
        return reduced
