"""What the ISIS DAE's spectrum PVs show, from the live view's run histogram
(liveview.run_histogram.RunHistogram, per pixel) and the run's spectrum map
(liveview.spectrum_map.SpectrumMap). Pure: a histogram and a map in, arrays out.

Numbering as the ISISDAE IOC's: spectrum s is the sum of the pixels the run's pl72 map puts
in s (one a pixel without a map); a spectrum with no pixel (spectrum 0, the dust-bin) reads
as zeros. Periods from 1 as named; period 0 is the current one (the last frame's). In
`SPECINTEGRALS` and `SPECDATA` the spectra are 0..NUMSPECTRA, spectrum 0 included, and in
`SPECDATA` each spectrum's time bins are 0..NTC, bin 0 the DAE's junk bin (always 0 here).

The histogram stays per pixel (the images, the page and the reduction need pixels) and is
summed into spectra as it is read: a spectrum's read copies its own pixels' rows only. A
beam monitor served as a spectrum (the map's `monitors`) reads the histogram's own counts of
that monitor instead."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from liveview.spectrum_map import SpectrumMap

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


def spectrum_value(histogram: Any, spectra: SpectrumMap, period: int, spectrum: int,
                   axis: str) -> np.ndarray:
    """A spectrum PV's value as float32: X the channel centres and XE the edges in µs, YC
    the counts, Y the counts per µs of channel width. `period` as named (0: current)."""
    edges_us = np.asarray(histogram.channels.edges(), np.float64) / 1000.0
    if axis == "XE":
        return edges_us.astype(np.float32)
    if axis == "X":
        return ((edges_us[:-1] + edges_us[1:]) / 2).astype(np.float32)
    rows = spectra.rows_of(spectrum)
    monitor = spectra.monitor_at(spectrum)
    if monitor is not None:  # a beam monitor's: its own histogram, not pixels
        counts = histogram.monitor(monitor, period_index(histogram, period)).astype(
            np.float64)
    elif len(rows):
        # the spectrum's own rows, copied under the histogram's lock: its cost is its
        # pixels', whatever the histogram's size
        counts = histogram.rows_at(period_index(histogram, period), rows).sum(
            axis=0, dtype=np.uint64).astype(np.float64)
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


def spec_integrals(histogram: Any, spectra: SpectrumMap, periods: int,
                   max_length: int) -> np.ndarray:
    """`SPECINTEGRALS`: counts per spectrum, [period][spectrum 0..NUMSPECTRA] flattened,
    int32, at most max_length elements."""
    width = spectra.n_spectra + 1
    length = min(integrals_length(spectra.n_spectra, periods), max_length)
    out = np.zeros(length, np.int64)
    # reduceat takes no empty group; a pixel past NUMSPECTRA (one a pixel, pixels from
    # above 1) is in no slot
    numbers, starts = _filled(spectra)
    shown = numbers <= spectra.n_spectra
    for p in range(math.ceil(length / width)):
        at = p * width + numbers
        fits = shown & (at < length)
        if not fits.any():
            break
        totals = histogram.pixel_totals(period=p)[spectra.rows]
        sums = np.add.reduceat(totals, starts[:-1])
        out[at[fits]] = sums[fits]
    for spectrum, source in spectra.monitors:
        for p in range(math.ceil(length / width)):
            at = p * width + spectrum
            if spectrum <= spectra.n_spectra and at < length:
                out[at] = histogram.monitor(source, p).sum(dtype=np.uint64)
    return np.minimum(out, _INT32_MAX).astype(np.int32)


def specdata_length(n_spectra: int, channels: int, periods: int) -> int:
    return periods * (n_spectra + 1) * (channels + 1)


def spec_data(histogram: Any, spectra: SpectrumMap, periods: int,
              max_length: int) -> np.ndarray:
    """`SPECDATA`: counts, [period][spectrum 0..NUMSPECTRA][time bin 0..channels]
    flattened (C order), int32, at most max_length elements: only the rows that fit are
    copied, whole spectra of about ROWS_CHUNK pixel rows under the lock at a time."""
    channels = histogram.channels.channels
    width = spectra.n_spectra + 1
    length = min(specdata_length(spectra.n_spectra, channels, periods), max_length)
    out = np.zeros((math.ceil(length / (channels + 1)), channels + 1), np.int32)
    numbers, starts = _filled(spectra)
    for p in range(math.ceil(len(out) / width)):
        base = p * width
        # the spectra of this period that fit: those up to NUMSPECTRA and within the length
        end = int(np.searchsorted(numbers, min(spectra.n_spectra, len(out) - 1 - base),
                                  side="right"))
        g = 0
        while g < end:
            # spectra g..h-1: as many whole spectra as ROWS_CHUNK rows hold, one at least
            h = int(np.searchsorted(starts, starts[g] + ROWS_CHUNK, side="right")) - 1
            h = min(max(h, g + 1), end)
            out[base + numbers[g:h], 1:] = np.minimum(
                _sums(histogram, p, spectra.rows, starts[g:h + 1]), _INT32_MAX)
            g = h
        for spectrum, source in spectra.monitors:
            if spectrum <= spectra.n_spectra and base + spectrum < len(out):
                out[base + spectrum, 1:] = np.minimum(histogram.monitor(source, p),
                                                      _INT32_MAX)
    return out.ravel()[:length]


def _filled(spectra: SpectrumMap) -> tuple[np.ndarray, np.ndarray]:
    """The spectra with at least one row, and their rows' starts (one more: the end)."""
    filled = spectra.starts[:-1] < spectra.starts[1:]
    return spectra.numbers[filled], np.append(spectra.starts[:-1][filled],
                                              spectra.starts[-1])


def _sums(histogram: Any, period: int, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Counts [spectrum, channel] of the spectra whose rows are rows[starts[i]:starts[i+1]]
    (none empty), read under the lock at most ROWS_CHUNK rows at a time."""
    chosen = rows[starts[0]:starts[-1]]
    if len(chosen) <= ROWS_CHUNK:
        counts = histogram.rows_at(period, chosen)
        if len(chosen) == len(starts) - 1:  # one row a spectrum: nothing to add
            return counts
        return np.add.reduceat(counts, starts[:-1] - starts[0], axis=0, dtype=np.uint64)
    # one spectrum of more rows than a chunk (a whole bank summed, say)
    total = np.zeros(histogram.channels.channels, np.uint64)
    for start in range(0, len(chosen), ROWS_CHUNK):
        total += histogram.rows_at(period, chosen[start:start + ROWS_CHUNK]).sum(
            axis=0, dtype=np.uint64)
    return total[np.newaxis]
