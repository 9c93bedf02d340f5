"""The live view's array PVs, over PVA:

- `SPEC:<period>:<spectrum>:X`, `:XE`, `:Y`, `:YC`, named and shaped as the ISIS DAE's and
  kafka_dae_diagnostics' (ibex_bluesky_core reads them so): X the time-channel centres and XE
  their edges (one more), in µs as the DAE gives time of flight; YC the counts per channel,
  Y the counts per µs of channel width. Spectra are the run's, as the DAE's `DAE:SPEC`
  (liveview.dae_ca) has them: the pl72's detector-spectrum map sums pixels into them, one a
  pixel without a map (liveview.spectrum_map), and the beam monitors at their spectra
  (liveview.monitor_spectra); spectra from the lowest to the highest; periods from 1 up to
  the most the live view bins. A spectrum PV is made when a client first asks for it and
  computed only while a client is connected: 16k spectra cost nothing until someone looks.
- `IMAGE`: the detector's counts per pixel as an NTNDArray (height x width), which Phoebus,
  pvmonitor and areaDetector viewers show, and `<BANK>:IMAGE` each bank's in its own shape
  (rows x columns, from the geometry); `IMAGE:TOF_MIN:SP` / `IMAGE:TOF_MAX:SP` (µs) limit
  them all to a time-of-flight range, to the nearest channel edges.

- `TCB:TOF_MIN:SP`, `TCB:TOF_MAX:SP` (µs), `TCB:CHANNELS:SP`, `TCB:LOG:SP` (0 linear, 1
  logarithmic): the time-channel boundaries, as the DAE's TCB settings give them. A put is
  checked with the other three (a logarithmic binning needs a minimum above 0) and refused
  with the reason, or taken: the live view then bins the current run again from its start.

The time channels in µs: the DAE's TCB PVs are in µs; the events are in ns (ev44)."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from p4p.nt import NTNDArray, NTScalar
from p4p.server.thread import SharedPV

from datastream.time_channels import MAX_CHANNELS, MAX_TOF_NS
from liveview import pva_access
from liveview.dae_arrays import spectrum_value
from liveview.spectrum_map import SpectrumMap

log = logging.getLogger(__name__)

SPEC = re.compile(r"SPEC:(\d+):(\d+):(X|XE|Y|YC)$")


class _Watched:
    """A SharedPV handler that keeps count of connected clients."""

    def __init__(self, owner: ArrayPVs, name: str) -> None:
        self.owner, self.name = owner, name

    def onFirstConnect(self, pv: SharedPV) -> None:
        self.owner._connected(self.name, True)

    def onLastDisconnect(self, pv: SharedPV) -> None:
        self.owner._connected(self.name, False)


class _Setpoint:
    """A put handler: `apply(value)` may refuse with ValueError, whose message the put gets.
    Only a finite number within [low, high] reaches `apply`: a put of NaN or -inf once
    reached the binning kernels through the time channels."""

    def __init__(self, apply: Any, low: float, high: float, unit: str = "") -> None:
        self.apply, self.low, self.high, self.unit = apply, low, high, unit

    def check(self, raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{str(raw)[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if not self.low <= value <= self.high:
            unit = f" {self.unit}" if self.unit else ""
            raise ValueError(f"{value:g}{unit} is outside {self.low:g} to {self.high:g}{unit}")
        return value

    def put(self, pv: SharedPV, op: Any) -> None:
        if not pva_access.ACCESS.check(op, op.value()):  # the site's ACF decides who writes
            return
        try:
            value = self.check(op.value())
            self.apply(value)
        except ValueError as exc:
            op.done(error=str(exc))
            return
        except Exception as exc:  # any failure is the put's, never the server's
            log.exception("a put to %s failed", op.name())
            op.done(error=f"refused: {exc}")
            return
        pv.post(value)
        op.done()


class ArrayPVs:
    """A p4p DynamicProvider handler (testChannel/makeChannel, p4p's names) for the spectra,
    and the static image PVs, of a run histogram (liveview.run_histogram.RunHistogram).
    `update()` posts what clients watch; called by the publisher."""

    def __init__(self, prefix: str, histogram: Any, image_shape: tuple[int, int],
                 banks: dict[str, np.ndarray] | None = None,
                 on_tcb: Any = None, spectra: Callable[[], SpectrumMap] | None = None) -> None:
        """`banks`: name -> its pixel ids in the bank's shape (rows, columns); `on_tcb`:
        called with new TimeChannels from the TCB setpoints; `spectra`: the current run's
        spectrum map (default: one a pixel)."""
        self.prefix = prefix
        self.first_pixel, self.n_pixels = histogram.first_pixel, histogram.n_pixels
        if spectra is None:
            one = SpectrumMap.one_a_pixel(self.first_pixel, self.n_pixels)
            spectra = lambda: one  # noqa: E731
        self.spectra = spectra
        self.image_shape = image_shape
        # re-entrant: makeChannel computes a first value (which takes it) while holding it
        self._lock = threading.RLock()
        self._set_channels(histogram)
        self._pvs: dict[str, SharedPV] = {}
        self._watched: set[str] = set()
        self.tof_range_us = [float(self.edges_us[0]), float(self.edges_us[-1])]
        self.banks = dict(banks or {})
        self.image = SharedPV(nt=NTNDArray(), initial=self.image_counts())
        self.bank_images = {name: SharedPV(nt=NTNDArray(), initial=image)
                            for name, image in self.bank_counts(self.pixel_counts()).items()}
        self.setpoints = {
            "IMAGE:TOF_MIN:SP": self._setpoint(0), "IMAGE:TOF_MAX:SP": self._setpoint(1)}
        self._on_tcb = on_tcb
        tc = histogram.channels
        self.setpoints |= {
            "TCB:TOF_MIN:SP": self._tcb("tof_min_ns", tc.tof_min_ns / 1000, "d", "us", 1000),
            "TCB:TOF_MAX:SP": self._tcb("tof_max_ns", tc.tof_max_ns / 1000, "d", "us", 1000),
            "TCB:CHANNELS:SP": self._tcb("channels", tc.channels, "i", "", None),
            "TCB:LOG:SP": self._tcb("logarithmic", int(tc.logarithmic), "i", "", None)}

    def _set_channels(self, histogram: Any) -> None:
        with self._lock:
            self.histogram = histogram
            self.edges_us = np.asarray(histogram.channels.edges(), np.float64) / 1000.0
            self.centres_us = (self.edges_us[:-1] + self.edges_us[1:]) / 2

    def set_histogram(self, histogram: Any) -> None:
        """The live view binned anew with other time channels: the X and XE PVs follow."""
        self._set_channels(histogram)
        for name in self.watched:
            parsed = self._parse(name, new=False)
            if parsed is not None and parsed[2] in ("X", "XE"):
                self._pvs[name].post(self._value(*parsed))

    def _setpoint(self, index: int) -> SharedPV:
        def apply(value: float) -> None:
            self.tof_range_us[index] = value

        return SharedPV(nt=NTScalar("d", display=True),
                        handler=_Setpoint(apply, 0.0, MAX_TOF_NS / 1000, "us"),
                        initial={"value": self.tof_range_us[index], "display.units": "us"})

    def _tcb(self, field: str, initial: float, code: str, unit: str,
             scale: float | None) -> SharedPV:
        """A TCB setpoint: the new TimeChannels checked whole, then handed to on_tcb."""
        low, high = {"channels": (1, MAX_CHANNELS), "logarithmic": (0, 1)}.get(
            field, (0.0, MAX_TOF_NS / 1000))

        def apply(value: float) -> None:
            if self._on_tcb is None:
                raise ValueError("the time channels are fixed here")
            current = self.histogram.channels
            if field in ("channels", "logarithmic") and value != int(value):
                raise ValueError(f"{field} must be a whole number")
            new = dataclasses.replace(current, **{field: (
                value * scale if scale else bool(value) if field == "logarithmic"
                else int(value))})
            self._on_tcb(new)  # TimeChannels checks itself: a ValueError says why

        return SharedPV(nt=NTScalar(code, display=True),
                        handler=_Setpoint(apply, low, high, unit),
                        initial={"value": initial, "display.units": unit})

    def static(self) -> dict[str, SharedPV]:
        """The PVs served by name (not made on demand)."""
        return {self.prefix + "IMAGE": self.image} | {
            f"{self.prefix}{name.upper()}:IMAGE": pv for name, pv in self.bank_images.items()
        } | {
            self.prefix + n: pv for n, pv in self.setpoints.items()}

    # -- p4p DynamicProvider handler --
    def _parse(self, name: str, new: bool = True) -> tuple[int, int, str] | None:
        """(period from 0, spectrum, kind) of a spectrum PV's name; periods from 1 in the
        name, as the DAE names them, up to the most the live view bins (a period not seen
        yet reads as zeros). A `new` name must be a spectrum of the current run's map; one
        made for an earlier run reads as zeros where this run has no such spectrum."""
        if not name.startswith(self.prefix):
            return None
        m = SPEC.match(name[len(self.prefix):])
        if m is None:
            return None
        period, spectrum, kind = int(m[1]), int(m[2]), m[3]
        if not 1 <= period <= self.histogram.max_periods:
            return None
        named = self.spectra().named()
        if new and not (named and named[0] <= spectrum <= named[1]):
            return None
        return period - 1, spectrum, kind

    def testChannel(self, name: str) -> bool:
        return self._parse(name, new=name not in self._pvs) is not None

    def makeChannel(self, name: str, peer: str) -> SharedPV | None:
        parsed = self._parse(name, new=name not in self._pvs)
        if parsed is None:
            # not ours: None leaves the name to the other providers (the server can ask
            # every provider of a name a client opens, the static counters' names too)
            return None
        with self._lock:
            pv = self._pvs.get(name)
            if pv is None:
                kind = parsed[2]
                unit = {"X": "us", "XE": "us", "Y": "counts/us", "YC": "counts"}[kind]
                pv = SharedPV(nt=NTScalar("af", display=True), handler=_Watched(self, name),
                              initial={"value": self._value(*parsed),
                                       "display.units": unit})
                self._pvs[name] = pv
            return pv

    def _connected(self, name: str, connected: bool) -> None:
        with self._lock:
            (self._watched.add if connected else self._watched.discard)(name)
            pv = self._pvs.get(name)
        parsed = self._parse(name, new=False)
        if connected and pv is not None and parsed is not None:
            # a PV made earlier and left unwatched since holds an old value: the new
            # client gets the current one, not the next publish's
            pv.post(self._value(*parsed))

    @property
    def watched(self) -> set[str]:
        with self._lock:
            return set(self._watched)

    # -- posting --
    def _value(self, period: int, spectrum: int, kind: str) -> np.ndarray:
        """What a spectrum PV shows now (period from 0), as the DAE's spectrum PVs do."""
        with self._lock:  # a histogram and its channels of one binning
            histogram = self.histogram
        return spectrum_value(histogram, self.spectra(), period + 1, spectrum, kind)

    def update(self) -> dict[str, np.ndarray]:
        """Post the watched spectra and the images; returns the images, each bank's in its
        shape (the whole detector's when there are no banks)."""
        for name in self.watched:
            parsed = self._parse(name, new=False)
            if parsed is None or parsed[2] in ("X", "XE"):
                continue  # posted when the time channels change (set_histogram)
            self._pvs[name].post(self._value(*parsed))
        per_pixel = self.pixel_counts()
        whole = self.image_counts(per_pixel)
        self.image.post(whole)
        banks = self.bank_counts(per_pixel)
        for name, image in banks.items():
            self.bank_images[name].post(image)
        return banks or {"detector": whole}

    def pixel_counts(self) -> np.ndarray:
        """Counts per pixel (first pixel first) within the TOF range."""
        with self._lock:
            histogram, edges = self.histogram, self.edges_us
        low, high = self.tof_range_us
        c0 = int(np.searchsorted(edges, low, side="left"))
        c1 = int(np.searchsorted(edges, high, side="right")) - 1
        return np.minimum(histogram.pixel_totals(c0, max(c0, c1)),
                          np.iinfo(np.uint32).max).astype(np.uint32)

    def bank_counts(self, per_pixel: np.ndarray) -> dict[str, np.ndarray]:
        """Each bank's counts in its own shape."""
        return {name: per_pixel[ids - self.first_pixel] for name, ids in self.banks.items()}

    def image_ids(self, name: str) -> np.ndarray:
        """The pixel ids of an image as the page draws it, (height, width); -1 where the
        whole detector's near-square layout has a cell past the last pixel."""
        if name in self.banks:
            return self.banks[name]
        if name == "detector" and not self.banks:
            height, width = self.image_shape
            ids = np.full(height * width, -1, np.int64)
            ids[:self.n_pixels] = np.arange(self.first_pixel, self.first_pixel + self.n_pixels)
            return ids.reshape(height, width)
        raise ValueError(f"no image {name!r}")

    def roi_ids(self, name: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The pixel ids in rows and columns (each first..last, inclusive) of an image."""
        ids = self.image_ids(name)
        (r0, r1), (c0, c1) = sorted(rows), sorted(cols)
        if r0 < 0 or c0 < 0 or r1 >= ids.shape[0] or c1 >= ids.shape[1]:
            raise ValueError(f"rows {r0}..{r1}, columns {c0}..{c1} are outside {name!r} "
                             f"({ids.shape[0]} x {ids.shape[1]})")
        chosen = ids[r0:r1 + 1, c0:c1 + 1].ravel()
        return chosen[chosen >= 0]

    def image_counts(self, per_pixel: np.ndarray | None = None) -> np.ndarray:
        """Counts per pixel within the TOF range, laid out (height, width)."""
        if per_pixel is None:
            per_pixel = self.pixel_counts()
        height, width = self.image_shape
        flat = np.zeros(height * width, np.uint32)
        flat[:len(per_pixel)] = per_pixel
        return flat.reshape(height, width)
