"""What the ISIS DAE's spectrum PVs show, from the live view's run histogram
(liveview.run_histogram.RunHistogram). Pure: a histogram in, arrays out.

Numbering as the ISISDAE IOC's: spectrum n is pixel n (the DAE's one-to-one map, as
`LIVE:SPEC` has it); a spectrum with no pixel (spectrum 0 when pixels start at 1) reads as
zeros. Periods from 1 as named; period 0 is the current one (the last frame's). In
`SPECINTEGRALS` and `SPECDATA` the spectra are 0..NUMSPECTRA, spectrum 0 included, and in
`SPECDATA` each spectrum's time bins are 0..NTC, bin 0 the DAE's junk bin (always 0 here)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# pixel rows copied under the histogram's lock at once, for SPECDATA
ROWS_CHUNK = 256
_INT32_MAX = np.iinfo(np.int32).max
AXES = ("X", "XE", "Y", "YC")


def period_index(histogram: Any, period: int) -> int:
    """The histogram's period (from 0) of a period as the DAE names it (from 1; 0 the
    current period)."""
    return int(histogram.current_period) if period == 0 else period - 1


def spectrum_length(histogram: Any, axis: str) -> int:
    """The elements of a spectrum PV now: the channels, one more for the edges."""
    return histogram.channels.channels + (1 if axis == "XE" else 0)


def spectrum_value(histogram: Any, period: int, spectrum: int, axis: str) -> np.ndarray:
    """A spectrum PV's value as float32: X the channel centres and XE the edges in µs, YC
    the counts, Y the counts per µs of channel width. `period` as named (0: current)."""
    edges_us = np.asarray(histogram.channels.edges(), np.float64) / 1000.0
    if axis == "XE":
        return edges_us.astype(np.float32)
    if axis == "X":
        return ((edges_us[:-1] + edges_us[1:]) / 2).astype(np.float32)
    row = spectrum - histogram.first_pixel
    if 0 <= row < histogram.n_pixels:
        # one pixel's row, read under the histogram's lock: cheap whatever its size
        counts = histogram.spectrum(spectrum, period_index(histogram, period))
        counts = counts.astype(np.float64)
    else:
        counts = np.zeros(histogram.channels.channels, np.float64)
    if axis == "Y":
        counts = counts / np.diff(edges_us)
    return counts.astype(np.float32)


def padded(value: np.ndarray, nelm: int, axis: str) -> np.ndarray:
    """A spectrum PV's value at its NELM, as ISISDAE serves it: past NORD, X and XE repeat
    their last value and Y and YC are 0. EPICS base's clients (genie_python) read the whole
    array and cut it at NORD, and genie reads one X past NORD for a histogram's edges."""
    if len(value) >= nelm:
        return value[:nelm]
    fill = value[-1] if axis in ("X", "XE") and len(value) else 0
    return np.concatenate([value, np.full(nelm - len(value), fill, value.dtype)])


def integrals_length(n_spectra: int, periods: int) -> int:
    return periods * (n_spectra + 1)


def spec_integrals(histogram: Any, n_spectra: int, periods: int,
                   max_length: int) -> np.ndarray:
    """`SPECINTEGRALS`: counts per spectrum, [period][spectrum 0..n_spectra] flattened,
    int32, at most max_length elements."""
    length = min(integrals_length(n_spectra, periods), max_length)
    width = n_spectra + 1
    out = np.zeros(math.ceil(length / width) * width, np.int64)
    ids, keep = _spectra_of_pixels(histogram, n_spectra)
    for p in range(len(out) // width):
        totals = histogram.pixel_totals(period=p)
        out[p * width + ids[keep]] = totals[keep]
    return np.minimum(out[:length], _INT32_MAX).astype(np.int32)


def specdata_length(n_spectra: int, channels: int, periods: int) -> int:
    return periods * (n_spectra + 1) * (channels + 1)


def spec_data(histogram: Any, n_spectra: int, periods: int, max_length: int) -> np.ndarray:
    """`SPECDATA`: counts, [period][spectrum 0..n_spectra][time bin 0..channels] flattened
    (C order), int32, at most max_length elements: only the rows that fit are copied."""
    channels = histogram.channels.channels
    length = min(specdata_length(n_spectra, channels, periods), max_length)
    width = n_spectra + 1
    rows = np.zeros((math.ceil(length / (channels + 1)), channels + 1), np.int32)
    ids, keep = _spectra_of_pixels(histogram, n_spectra)
    ids = ids[keep]
    for p in range(math.ceil(len(rows) / width)):
        base = p * width
        for start in range(0, len(ids), ROWS_CHUNK):
            chunk = ids[start:start + ROWS_CHUNK]
            chunk = chunk[base + chunk < len(rows)]
            if len(chunk) == 0:
                break
            counts = histogram.rows(p, int(chunk[0] - histogram.first_pixel),
                                    int(chunk[-1] - histogram.first_pixel) + 1)
            rows[base + chunk, 1:] = np.minimum(counts, _INT32_MAX)
    return rows.ravel()[:length]


def _spectra_of_pixels(histogram: Any, n_spectra: int) -> tuple[np.ndarray, np.ndarray]:
    """The histogram's pixel ids (in row order), and which of them are spectra 0..n_spectra."""
    ids = np.arange(histogram.first_pixel, histogram.first_pixel + histogram.n_pixels)
    return ids, (ids >= 0) & (ids <= n_spectra)
