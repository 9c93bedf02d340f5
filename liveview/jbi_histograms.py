"""The four histogram types of just-bin-it, with its bin rules so NICOS sees the same
numbers: `hist1d` (counts per time of flight), `hist2d` (time of flight x detector id),
`dethist` (counts per detector id laid out width x height) and `roihist` (the rows of a
region of interest, each `width` ids from one of `left_edges`).

Ranges are numpy's histogram ranges: [low, high] with the top edge in the last bin. The
detector image maps id to x = (id - 1) % width, y = ((id - 1) // width) % height, as
just-bin-it does. Vectorised numpy (bincount): these are diagnostics a scientist asks for,
beside the live view's own numba kernels. Pure: arrays in, arrays out."""

from __future__ import annotations

import numpy as np

from liveview.jbi_commands import HistSpec


def _linear_index(values: np.ndarray, low: float, high: float,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of each value over [low, high] in n equal bins, and which values fall in."""
    v = np.asarray(values, np.float64)
    inside = (v >= low) & (v <= high)
    idx = ((v[inside] - low) * (n / (high - low))).astype(np.int64)
    # the top edge belongs to the last bin; and no index past the counts, whatever the
    # arithmetic gave (the command's checks keep it finite)
    np.clip(idx, 0, n - 1, out=idx)
    return idx, inside


class JbiHistogram:
    """Counts as float64 (hs00's ArrayDouble: what every NICOS version reads)."""

    def __init__(self, spec: HistSpec) -> None:
        self.spec = spec
        self.last_pulse_time = 0  # ns
        self.counts = np.zeros(self.shape, np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def edges(self) -> list[tuple[np.ndarray, str, str]]:
        """(bin boundaries, unit, label) per dimension."""
        raise NotImplementedError

    def _add(self, tof: np.ndarray, det: np.ndarray) -> None:
        raise NotImplementedError

    def add(self, pulse_ns: int, tof: np.ndarray, det: np.ndarray, source: str) -> None:
        if self.spec.source and source != self.spec.source:
            return
        self.last_pulse_time = max(self.last_pulse_time, pulse_ns)
        if len(tof):
            self._add(tof, det)

    def clear(self) -> None:
        self.counts[:] = 0

    def total(self) -> int:
        return int(self.counts.sum())


class Hist1d(JbiHistogram):
    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.spec.num_bins),)  # type: ignore[arg-type]

    def edges(self) -> list[tuple[np.ndarray, str, str]]:
        low, high = self.spec.tof_range  # type: ignore[misc]
        return [(np.linspace(low, high, self.shape[0] + 1), "ns", "time of flight")]

    def _add(self, tof: np.ndarray, det: np.ndarray) -> None:
        low, high = self.spec.tof_range  # type: ignore[misc]
        if self.spec.det_range is not None:
            d = np.asarray(det)
            keep = (d >= self.spec.det_range[0]) & (d <= self.spec.det_range[1])
            tof = np.asarray(tof)[keep]
        idx, _ = _linear_index(tof, low, high, self.shape[0])
        self.counts += np.bincount(idx, minlength=self.shape[0])


class Hist2d(JbiHistogram):
    @property
    def shape(self) -> tuple[int, ...]:
        bins = self.spec.num_bins
        return tuple(bins) if isinstance(bins, tuple) else (int(bins), int(bins))  # type: ignore[arg-type]

    def edges(self) -> list[tuple[np.ndarray, str, str]]:
        (t0, t1), (d0, d1) = self.spec.tof_range, self.spec.det_range  # type: ignore[misc]
        nx, ny = self.shape
        return [(np.linspace(t0, t1, nx + 1), "ns", "time of flight"),
                (np.linspace(d0, d1, ny + 1), "", "detector id")]

    def _add(self, tof: np.ndarray, det: np.ndarray) -> None:
        (t0, t1), (d0, d1) = self.spec.tof_range, self.spec.det_range  # type: ignore[misc]
        nx, ny = self.shape
        tof, det = np.asarray(tof), np.asarray(det)
        d = np.asarray(det, np.float64)
        keep = (d >= d0) & (d <= d1)
        ix, inside = _linear_index(tof[keep], t0, t1, nx)
        iy, _ = _linear_index(det[keep][inside], d0, d1, ny)
        self.counts += np.bincount(ix * ny + iy, minlength=nx * ny).reshape(nx, ny)


class DetHist(JbiHistogram):
    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.width, self.spec.height

    def edges(self) -> list[tuple[np.ndarray, str, str]]:
        return [(np.arange(self.spec.width + 1, dtype=np.float64), "", "x"),
                (np.arange(self.spec.height + 1, dtype=np.float64), "", "y")]

    def _add(self, tof: np.ndarray, det: np.ndarray) -> None:
        d = np.asarray(det, np.int64)
        keep = (d >= self.spec.det_range[0]) & (d <= self.spec.det_range[1])  # type: ignore[index]
        if self.spec.tof_range is not None:
            t = np.asarray(tof)
            keep &= (t >= self.spec.tof_range[0]) & (t <= self.spec.tof_range[1])
        d = d[keep] - 1
        w, h = self.shape
        x, y = d % w, (d // w) % h
        self.counts += np.bincount(x * h + y, minlength=w * h).reshape(w, h)


class RoiHist(JbiHistogram):
    def __init__(self, spec: HistSpec) -> None:
        order = np.argsort(spec.left_edges, kind="stable")
        self._rows = order  # row of each sorted left edge
        self._sorted = np.asarray(spec.left_edges, np.int64)[order]
        super().__init__(spec)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.width, len(self.spec.left_edges)

    def edges(self) -> list[tuple[np.ndarray, str, str]]:
        w, rows = self.shape
        return [(np.arange(w + 1, dtype=np.float64), "", "x"),
                (np.arange(rows + 1, dtype=np.float64), "", "row")]

    def _add(self, tof: np.ndarray, det: np.ndarray) -> None:
        d = np.asarray(det, np.int64)
        k = np.searchsorted(self._sorted, d, side="right") - 1
        found = k >= 0
        k = np.where(found, k, 0)
        x = d - self._sorted[k]
        found &= x < self.spec.width
        w, rows = self.shape
        flat = x[found] * rows + self._rows[k[found]]
        self.counts += np.bincount(flat, minlength=w * rows).reshape(w, rows)


KINDS: dict[str, type[JbiHistogram]] = {
    "hist1d": Hist1d, "hist2d": Hist2d, "dethist": DetHist, "roihist": RoiHist}


def make_histogram(spec: HistSpec) -> JbiHistogram:
    return KINDS[spec.type](spec)
