"""The live reduction's kernels: each event's time of flight turned into d-spacing (or a
monitor's into wavelength) by its own pixel's factor, and binned on the spot, event by event,
not by rebinning a TOF histogram (which would smear every event over a TOF channel's width).

Edges are any ascending boundaries; the channel is first guessed (one multiply for equal
bins, a grid lookup for logarithmic ones: equal dd/d) and then settled against the edges
themselves, so an event lands in exactly the bin `edges[c] <= d < edges[c + 1]` says, as
np.histogram or scipp's hist on the same edges put it. In chunks, as datastream.binning bins
(its CHUNK: indices first, then the increments)."""

from __future__ import annotations

import numba
import numpy as np

from datastream.binning import CHUNK

# a pixel's bank and 2θ rows packed in one int32: the 2θ row in the low bits
ANGLE_BITS = 16
ANGLE_MASK = (1 << ANGLE_BITS) - 1
# the most cells of a logarithmic binning's grid (8 MB of table): enough for 100,000 bins
# over a decade and a half at one cell per narrowest bin
MAX_GRID_CELLS = 1 << 20


@numba.njit(cache=True, nogil=True)
def _add(flat, index, n):
    """The increments of a chunk, in the histogram's own type: the reduced histograms are
    uint64 (a bank's peak bin may pass 4e9 counts in a long run; an image of 2θ x d is
    small), and a literal 1 would add as float64 and convert back."""
    one = flat.dtype.type(1)
    for j in range(n):
        flat[index[j]] += one


@numba.njit(cache=True, nogil=True)
def _search(edges, x):
    """The channel of x by bisection: where a first guess was more than one channel out
    (a capped grid's cell spanning channels; never for equal bins)."""
    low, high = 0, len(edges) - 2
    while low < high:
        mid = (low + high + 1) >> 1
        if edges[mid] <= x:
            low = mid
        else:
            high = mid - 1
    return low


@numba.njit(cache=True, nogil=True, inline="always")
def _step(x, edges, c):
    """Equal bins: the guess (x - low) * bins / (high - low) and the edges low + (high - low)
    * k / bins differ from the exact values by a few ulps, so the guess is the channel or one
    either side of it, when x lies within ulps of an edge: one step settles it by the edges,
    and no check is left to do (a check per event cost a fifth of the kernel's speed)."""
    if edges[c] > x:
        return c - 1
    if edges[c + 1] <= x:
        return c + 1
    return c


@numba.njit(cache=True, nogil=True, inline="always")
def _settle(x, edges, c):
    """The channel c with edges[c] <= x < edges[c + 1], from a guess c within one of it
    (arithmetic rounding), x already within the edges: the edges decide, not the
    arithmetic. -1 for a guess further out: the caller searches for those after the chunk
    (a call to _search in the loop itself cost a third of the kernel's speed, measured)."""
    if edges[c] > x:
        c -= 1
    elif edges[c + 1] <= x:
        c += 1
    if edges[c] <= x and x < edges[c + 1]:
        return c
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _linear_guess(x, n_channels, origin, scale):
    g = (x - origin) * scale
    return min(max(int(g), 0), n_channels - 1) if g == g else 0


@numba.njit(cache=True, nogil=True, inline="always")
def _grid_guess(x, table, origin, scale):
    """Logarithmic bins: a uniform grid over the edges, its cells no wider than the narrowest
    bin, says the channel at each cell's start (as datastream.binning.EdgeIndex): a log per
    event would cost more than all the rest of the kernel."""
    g = (x - origin) * scale
    return table[min(max(int(g), 0), len(table) - 1)] if g == g else 0


@numba.njit(cache=True, nogil=True)
def _searched(later, m, index_bank, index_angle, n, n_bins, pixel_id, tof, first_pixel,
              inv_difc, row_of, edges):
    """The chunk's events `later` (checked already: a bank's pixel, within the edges) by
    bisection, their indices after the n of the others; returns the chunk's count."""
    for j in range(m):
        i = later[j]
        p = pixel_id[i] - first_pixel
        c = _search(edges, tof[i] * inv_difc[p])
        row = row_of[p]
        index_bank[n] = np.int64(row >> ANGLE_BITS) * n_bins + c
        index_angle[n] = np.int64(row & ANGLE_MASK) * n_bins + c
        n += 1
    return n


# Two kernels, equal bins and logarithmic ones, the same loop but for the guess: one loop
# choosing between them per event ran at half the speed (measured, benchmarks/
# reduction_binning.py), as the branch keeps the compiler from simplifying the loop.
@numba.njit(cache=True, nogil=True)
def _dspacing_linear(flat_bank, flat_angle, n_bins, pixel_id, tof, first_pixel, inv_difc,
                     row_of, edges, origin, scale):
    low, high = edges[0], edges[n_bins]
    n_pixels = len(inv_difc)
    index_bank = np.empty(CHUNK, np.int64)
    index_angle = np.empty(CHUNK, np.int64)
    skipped = 0
    outside = 0
    for start in range(0, len(tof), CHUNK):
        n = 0
        for i in range(start, min(start + CHUNK, len(tof))):
            p = pixel_id[i] - first_pixel
            if p < 0 or p >= n_pixels or row_of[p] < 0:
                skipped += 1
                continue
            d = tof[i] * inv_difc[p]
            if not (d >= low and d < high):  # NaN too
                outside += 1
                continue
            c = _step(d, edges, _linear_guess(d, n_bins, origin, scale))
            row = row_of[p]
            index_bank[n] = np.int64(row >> ANGLE_BITS) * n_bins + c
            index_angle[n] = np.int64(row & ANGLE_MASK) * n_bins + c
            n += 1
        _add(flat_bank, index_bank, n)
        _add(flat_angle, index_angle, n)
    return skipped, outside


@numba.njit(cache=True, nogil=True)
def _dspacing_log(flat_bank, flat_angle, n_bins, pixel_id, tof, first_pixel, inv_difc, row_of,
                  edges, table, origin, scale):
    low, high = edges[0], edges[n_bins]
    n_pixels = len(inv_difc)
    index_bank = np.empty(CHUNK, np.int64)
    index_angle = np.empty(CHUNK, np.int64)
    skipped = 0
    outside = 0
    later = np.empty(CHUNK, np.int64)  # events whose guess was more than one bin out
    for start in range(0, len(tof), CHUNK):
        n = 0
        m = 0
        for i in range(start, min(start + CHUNK, len(tof))):
            p = pixel_id[i] - first_pixel
            if p < 0 or p >= n_pixels or row_of[p] < 0:
                skipped += 1
                continue
            d = tof[i] * inv_difc[p]
            if not (d >= low and d < high):
                outside += 1
                continue
            c = _settle(d, edges, _grid_guess(d, table, origin, scale))
            if c < 0:
                later[m] = i
                m += 1
                continue
            row = row_of[p]
            index_bank[n] = np.int64(row >> ANGLE_BITS) * n_bins + c
            index_angle[n] = np.int64(row & ANGLE_MASK) * n_bins + c
            n += 1
        n = _searched(later, m, index_bank, index_angle, n, n_bins, pixel_id, tof,
                      first_pixel, inv_difc, row_of, edges)
        _add(flat_bank, index_bank, n)
        _add(flat_angle, index_angle, n)
    return skipped, outside


def pack_rows(bank_of: np.ndarray, angle_of: np.ndarray) -> np.ndarray:
    """Each pixel's bank row and 2θ row in one int32 (one load per event, not two); -1 for
    a pixel of no bank."""
    if len(angle_of) and int(angle_of.max(initial=0)) > ANGLE_MASK:
        raise ValueError(f"more than {ANGLE_MASK + 1} 2θ bins")
    rows = (bank_of.astype(np.int32) << ANGLE_BITS) | angle_of.astype(np.int32)
    return np.where(bank_of >= 0, rows, -1).astype(np.int32)


def bin_dspacing(by_bank: np.ndarray, by_angle: np.ndarray, pixel_id: np.ndarray,
                 tof: np.ndarray, first_pixel: int, inv_difc: np.ndarray, row_of: np.ndarray,
                 edges: np.ndarray, first_guess: tuple[np.ndarray, float, float],
                 logarithmic: bool) -> tuple[int, int]:
    """Events (pixel id, time of flight in ns) into I(d) per bank, by_bank (banks, bins),
    and I(2θ, d), by_angle (2θ bins, bins). Per pixel (by id - first_pixel): inv_difc (Å per
    ns of time of flight) and row_of (pack_rows: its bank's and 2θ's rows, -1: no bank's);
    first_guess from guess(edges, logarithmic). Returns (events of no bank's pixel, events
    outside the edges); those are skipped. Every index is checked, here or in the kernel: a
    hostile pixel id reads nothing."""
    if len(pixel_id) != len(tof):
        raise ValueError("bin_dspacing: pixel ids and times of flight differ in length")
    n_bins = by_bank.shape[1]
    if len(edges) != n_bins + 1 or by_angle.shape[1] != n_bins or len(row_of) != len(inv_difc):
        raise ValueError("bin_dspacing: histograms, edges and pixel tables disagree")
    rows = row_of[row_of >= 0]
    if len(rows) and (int(rows.max()) >> ANGLE_BITS >= by_bank.shape[0]
                      or int((rows & ANGLE_MASK).max()) >= by_angle.shape[0]):
        raise ValueError("bin_dspacing: a pixel's row is outside the histograms")
    table, origin, scale = first_guess
    if logarithmic:
        skipped, outside = _dspacing_log(
            by_bank.reshape(-1), by_angle.reshape(-1), n_bins, pixel_id, tof, first_pixel,
            inv_difc, row_of, edges, table, origin, scale)
    else:
        skipped, outside = _dspacing_linear(
            by_bank.reshape(-1), by_angle.reshape(-1), n_bins, pixel_id, tof, first_pixel,
            inv_difc, row_of, edges, origin, scale)
    return int(skipped), int(outside)


@numba.njit(cache=True, nogil=True)
def bin_scaled(hist, tof, factor, edges, table, origin, scale, logarithmic):
    """Times of flight (ns) times one factor (a monitor's Å of wavelength per ns) into hist
    (len(edges) - 1,). Returns the events outside the edges (skipped)."""
    n_bins = len(hist)
    if len(edges) != n_bins + 1:
        raise ValueError("bin_scaled: not one edge more than the histogram's bins")
    low, high = edges[0], edges[n_bins]
    index = np.empty(CHUNK, np.int64)
    outside = 0
    for start in range(0, len(tof), CHUNK):
        n = 0
        for i in range(start, min(start + CHUNK, len(tof))):
            x = tof[i] * factor
            if not (x >= low and x < high):
                outside += 1
                continue
            guessed = (_grid_guess(x, table, origin, scale) if logarithmic
                       else _linear_guess(x, n_bins, origin, scale))
            c = _settle(x, edges, guessed)  # checked either way: a monitor's, few events
            index[n] = c if c >= 0 else _search(edges, x)
            n += 1
        _add(hist, index, n)
    return outside


def guess(edges: np.ndarray, logarithmic: bool
          ) -> tuple[np.ndarray, float, float]:
    """(table, origin, scale) of _channel's first guess for these edges: for equal bins the
    first edge and channels per unit; for logarithmic ones a grid of cells no wider than
    the narrowest bin (at most MAX_GRID_CELLS: past that a cell may span channels, which
    _channel bisects), cells per unit, and each cell's first channel."""
    edges = np.asarray(edges, np.float64)
    n = len(edges) - 1
    low, high = float(edges[0]), float(edges[-1])
    if not logarithmic:
        return np.zeros(2, np.int64), low, n / (high - low)
    narrowest = float(np.min(np.diff(edges)))
    cells = int(min(MAX_GRID_CELLS, max(1, np.ceil((high - low) / narrowest))))
    starts = low + np.arange(cells + 1) * ((high - low) / cells)
    table = np.clip(np.searchsorted(edges, starts, side="right") - 1, 0, n - 1)
    return table.astype(np.int64), low, cells / (high - low)


def warm_up() -> None:
    """Load (or compile) the kernels now, as datastream.binning.warm_up does for its own."""
    edges = np.array([1.0, 2.0, 3.0])
    by_bank, by_angle = np.zeros((1, 2), np.uint64), np.zeros((1, 2), np.uint64)
    ids, tof = np.array([1], np.int32), np.array([1500], np.int32)
    for logarithmic in (False, True):
        first = guess(edges, logarithmic)
        bin_dspacing(by_bank, by_angle, ids, tof, 1, np.array([1e-3]), np.zeros(1, np.int32),
                     edges, first, logarithmic)
        bin_scaled(by_bank[0], tof, 1e-3, edges, *first, logarithmic)
