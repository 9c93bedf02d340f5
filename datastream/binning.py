"""The binning kernels: events (pixel id, time of flight) into a pixels x time-channel
histogram. Pure functions over plain arrays, compiled by numba; tests compare them with
np.histogram2d. Time channels are linear (the fast path: one multiply per event) or any
ascending boundaries (a binary search per event), as the DAE's TCB settings give them.

Dense histograms are uint32 (pixels, channels), a spectrum per row; above DENSE_LIMIT bins
(1M pixels x 8000 channels would be 32 GB) counts go to a sparse open-addressing table keyed
by pixel * channels + channel, which holds only the bins that were hit."""

from __future__ import annotations

import numba
import numpy as np

from datastream.prefetch import prefetch

DENSE_LIMIT = 512 * 1024 * 1024  # bins (2 GiB of uint32)
_EMPTY = np.int64(-1)


# Events are binned in chunks of this many: first every event's flat bin index (pure
# arithmetic, several hundred M events/s), then a tight loop of increments. For histograms far
# larger than the caches every increment is a cache miss, and the short second loop lets the
# CPU keep many of them in flight at once: measured 2-3x the events/s of one fused loop, and
# faster than sorting the events by block of pixels first (benchmarks/liveview_binning.py).
CHUNK = 4096


@numba.njit(cache=True, nogil=True)
def _add(flat, index, n):
    """One count in each bin `index` names; -1 names none (an event outside)."""
    for j in range(n):
        k = index[j]
        if k >= 0:
            flat[k] += 1


@numba.njit(cache=True, nogil=True)
def _add_spill(flat, high, index, n):
    """As _add into small counters (uint8) that carry into `high` as they wrap: a bin's
    count is high * 256 + flat (the dtype's range + 1)."""
    for j in range(n):
        k = index[j]
        if k < 0:
            continue
        v = flat[k] + 1
        flat[k] = v  # wraps to 0 at the dtype's top
        if flat[k] == 0:
            high[k] += 1


@numba.njit(cache=True, nogil=True)
def _linear_channel(t, tof_min, scale, n_channels):
    """The channel of a time already found within [tof_min, tof_max); -1 if the arithmetic
    says otherwise (a NaN or infinite bound or scale): checked as a float, before int(),
    whose result for a NaN is INT64_MIN and would index memory far off."""
    x = (t - tof_min) * scale
    if not x >= 0.0:  # NaN too
        return -1
    if x >= n_channels:  # rounding at the top edge
        return n_channels - 1
    return int(x)


@numba.njit(cache=True, nogil=True)
def _linear_index(pixel_id, tof, first_pixel, tof_min, tof_max, scale, n_pixels, n_channels,
                  index):
    """Each event's flat bin into `index` (-1: outside), and how many were outside, over
    equal channels: with no branch, so the CPU's vector units compute several at once (a
    NaN time or bound, or an infinite one, compares as outside; the channel computed for
    an event outside is not kept)."""
    outside = 0
    for i in range(len(tof)):
        p = np.int64(pixel_id[i]) - first_pixel
        t = tof[i]
        x = (t - tof_min) * scale
        inside = ((np.uint64(p) < np.uint64(n_pixels)) & (t >= tof_min) & (t < tof_max)
                  & (x >= 0.0))
        c = min(np.int64(x), n_channels - 1)  # rounding at the top edge
        index[i] = p * n_channels + c if inside else -1
        outside += np.int64(not inside)
    return outside


@numba.njit(cache=True, nogil=True)
def bin_linear(hist, pixel_id, tof, first_pixel, tof_min, tof_max, n_channels):
    """Add events to hist (pixels, channels) over [tof_min, tof_max) in equal channels.
    Returns how many events fell outside (pixel or time); they are skipped, not clipped.
    Every index is checked here, whatever the caller checked: the arrays must agree, and
    a pixel or channel outside the histogram is skipped. A chunk's indices are computed
    without a branch first (_linear_index; benchmarks/liveview_binning.py: 231 -> 286 M
    events/s into 4k x 1,000, 93 -> 105 into 16k x 8,000, against the increments' own
    ceiling of 350-390 and 116-119)."""
    if len(pixel_id) != len(tof):
        raise ValueError("bin_linear: pixel ids and times of flight differ in length")
    if hist.shape[1] != n_channels:
        raise ValueError("bin_linear: the histogram does not have n_channels channels")
    n_pixels = hist.shape[0]
    flat = hist.reshape(-1)
    scale = n_channels / (tof_max - tof_min)
    index = np.empty(CHUNK, np.int64)
    skipped = 0
    for start in range(0, len(tof), CHUNK):
        stop = min(start + CHUNK, len(tof))
        skipped += _linear_index(pixel_id[start:stop], tof[start:stop], first_pixel, tof_min,
                                 tof_max, scale, n_pixels, n_channels, index)
        _add(flat, index, stop - start)
    return skipped


@numba.njit(cache=True, nogil=True)
def _edge_channel(edges, t):
    """The channel c with edges[c] <= t < edges[c + 1], t already within the edges: a
    bisection without a branch on the data (a conditional move each step), as a branch the
    CPU cannot predict costs more than the step itself."""
    low = 0
    n = len(edges) - 1  # channels still in the running, from low
    while n > 1:
        half = n >> 1
        low = low + half if edges[low + half] <= t else low
        n -= half
    return low


@numba.njit(cache=True, nogil=True)
def bin_edges(hist, pixel_id, tof, first_pixel, edges):
    """Add events to hist (pixels, len(edges) - 1) by ascending boundaries (log binning)."""
    if len(pixel_id) != len(tof):
        raise ValueError("bin_edges: pixel ids and times of flight differ in length")
    n_pixels = hist.shape[0]
    n_channels = hist.shape[1]
    if len(edges) != n_channels + 1:
        raise ValueError("bin_edges: not one edge more than the histogram's channels")
    flat = hist.reshape(-1)
    last = len(edges) - 1
    index = np.empty(CHUNK, np.int64)
    skipped = 0
    for start in range(0, len(tof), CHUNK):
        n = 0
        for i in range(start, min(start + CHUNK, len(tof))):
            p = pixel_id[i] - first_pixel
            t = tof[i]
            if p < 0 or p >= n_pixels or not (t >= edges[0] and t < edges[last]):
                skipped += 1
                continue
            c = _edge_channel(edges, t)
            if c < 0 or c >= n_channels:  # never past the edges, ascending or not
                skipped += 1
                continue
            index[n] = np.int64(p) * n_channels + c
            n += 1
        _add(flat, index, n)
    return skipped


# cells of the uniform grid an EdgeIndex lays over the boundaries, per channel: with several
# cells to a channel, most events' cell holds one channel and no search is left to do
GRID_CELLS_PER_CHANNEL = 4
# how _bin_indexed finds a channel: by the grid's table and a search; by one multiply and a
# search (equal channels); by one multiply alone (EdgeIndex.integral, whole times)
GRID_TABLE, GRID_UNIFORM, GRID_INTEGRAL = 0, 1, 2
_NO_HIGH = np.zeros(0, np.uint32)


class EdgeIndex:
    """Ascending boundaries with a uniform grid over them that says, for each grid cell,
    the channels it spans: binning by it costs about what linear binning costs, where a
    bisection per event (bin_edges) is held up by a branch the CPU cannot predict at every
    step (measured 16 M events/s against 130 for 1,000 channels: benchmarks/
    filewriter_throughput.py). Exact for any ascending boundaries."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.ascontiguousarray(edges, dtype=np.float64)
        n_channels = len(self.edges) - 1
        cells = max(1, GRID_CELLS_PER_CHANNEL * n_channels)
        low, high = float(self.edges[0]), float(self.edges[-1])
        self.inv_width = cells / (high - low) if high > low else 0.0
        starts = low + np.arange(cells + 1) * ((high - low) / cells)
        self.table = np.clip(np.searchsorted(self.edges, starts, side="right") - 1, 0,
                             max(n_channels - 1, 0)).astype(np.int64)
        # equal channels (a linear TCB): the channel is one multiply away, give or take
        # one, and the table is not read at all
        widths = np.diff(self.edges)
        self.uniform = bool(len(widths)) and bool(
            np.all(np.abs(widths - widths.mean()) <= 1e-9 * abs(widths.mean())))
        if self.uniform:
            self.inv_width = n_channels / (high - low)
        # whole boundaries a whole step apart (a TCB in ns from settings in µs, or whole
        # ns): for whole times the channel is one multiply away, exactly, with no boundary
        # read and no search (the file writer's binning: 167 -> 222 M events/s, ISIS frames
        # into 10,000 x 1,000 bytes)
        step = (high - low) / n_channels if n_channels else 0.0
        self.integral = (self.uniform and step >= 1 and step.is_integer() and low.is_integer()
                         and max(abs(low), abs(high)) < 2**31
                         and np.array_equal(self.edges, low + np.arange(n_channels + 1) * step))
        if self.integral:
            self.inv_width = 1.0 / step

    def grid(self, tof: np.ndarray) -> int:
        """How the kernel finds a time's channel: by one multiply only for whole times."""
        if self.integral and tof.dtype.kind in "iu":
            return GRID_INTEGRAL
        return GRID_UNIFORM if self.uniform else GRID_TABLE

    def bin(self, hist: np.ndarray, pixel_id: np.ndarray, tof: np.ndarray,
            first_pixel: int, high: np.ndarray | None = None, fetch_ahead: bool = True) -> int:
        """As bin_edges: events added to hist (pixels, channels); returns those skipped.
        With `high` (uint32, as many as hist's bins), hist holds small counters (uint8)
        that carry into it: a bin's count is high * 256 + hist. A histogram of a byte a bin
        is a quarter of the memory the binning runs over: for 10,000 x 1,000 bins, 10 MB
        that the caches hold, where 40 MB of uint32 make each event a miss (the file writer
        with the ICP's histogram: 46 -> 56 M events/s, benchmarks/filewriter_throughput.py).

        hist may be the transpose of a C-ordered (channels, pixels) array (channel_major()),
        `high` then in that order too: events sorted by time of flight, as ISIS's DAE sends
        each frame, then fall row after row into one channel's pixels, which the first-level
        cache holds, where a row per pixel makes each event a miss (10,000 x 1,000 bytes:
        1.4-1.8x the events/s, benchmarks/icp_binning.py; events in random order bin alike
        either way).

        fetch_ahead: each bin's memory asked for as its index is computed (datastream.
        prefetch), so the misses overlap the arithmetic; False only to measure it. Only the
        general loop (uneven or fractional channels: a log TCB) fetches ahead: the integral
        loop computes a chunk's indices in vector registers before its increments, and
        fetching ahead there cost a tenth of its events/s (benchmarks/icp_binning.py)."""
        if hist.ndim != 2:
            raise ValueError("EdgeIndex.bin: the histogram is not (pixels, channels)")
        n_pixels, n_channels = hist.shape
        if hist.flags.c_contiguous:
            flat, pixel_stride, channel_stride = hist.reshape(-1), n_channels, 1
        elif hist.flags.f_contiguous:
            flat, pixel_stride, channel_stride = hist.T.reshape(-1), 1, n_pixels
        else:
            raise ValueError("EdgeIndex.bin: the histogram is neither row- nor column-major")
        high = _NO_HIGH if high is None else high
        grid = self.grid(tof)
        if grid == GRID_INTEGRAL:
            return _bin_integral(flat, n_pixels, n_channels, pixel_stride, channel_stride,
                                 pixel_id, tof, first_pixel, int(self.edges[0]),
                                 int(self.edges[-1] - self.edges[0]), self.inv_width, high)
        return _bin_indexed(flat, n_pixels, n_channels, pixel_stride, channel_stride,
                            pixel_id, tof, first_pixel, self.edges, self.table,
                            self.inv_width, grid, high, fetch_ahead)


def channel_major(pixels: int, channels: int, dtype: type = np.uint8) -> np.ndarray:
    """Zeros (pixels, channels) laid out a channel a row: EdgeIndex.bin's faster order for
    events sorted by time of flight."""
    return np.zeros((channels, pixels), dtype).T


@numba.njit(cache=True, nogil=True)
def _check_arrays(flat, n_pixels, n_channels, pixel_id, tof, high):
    """EdgeIndex.bin's kernels check their arrays whatever the caller checked."""
    if len(pixel_id) != len(tof):
        raise ValueError("EdgeIndex.bin: pixel ids and times of flight differ in length")
    if len(flat) != n_pixels * n_channels:
        raise ValueError("EdgeIndex.bin: the histogram's memory is not its shape's")
    if len(high) > 0 and len(high) != len(flat):
        raise ValueError("EdgeIndex.bin: high is not one counter a bin")


@numba.njit(cache=True, nogil=True, inline="always")
def _count(flat, high, index, n):
    """A chunk's increments, carried into high (when given) as byte counters wrap."""
    if len(high) > 0:
        _add_spill(flat, high, index, n)
    else:
        _add(flat, index, n)


@numba.njit(cache=True, nogil=True)
def _bin_indexed(flat, n_pixels, n_channels, pixel_stride, channel_stride, pixel_id, tof,
                 first_pixel, edges, table, inv_width, grid, high, fetch_ahead):
    _check_arrays(flat, n_pixels, n_channels, pixel_id, tof, high)
    if len(edges) != n_channels + 1:
        raise ValueError("EdgeIndex.bin: not one edge more than the histogram's channels")
    last = len(edges) - 1
    cells = len(table) - 1
    index = np.empty(CHUNK, np.int64)
    skipped = 0
    for start in range(0, len(tof), CHUNK):
        n = 0
        for i in range(start, min(start + CHUNK, len(tof))):
            p = pixel_id[i] - first_pixel
            t = tof[i]
            if p < 0 or p >= n_pixels or not (t >= edges[0] and t < edges[last]):
                skipped += 1
                continue
            if grid == GRID_UNIFORM:
                lo = min(max(int((t - edges[0]) * inv_width), 0), n_channels - 1)
                hi = lo
            else:
                g = min(max(int((t - edges[0]) * inv_width), 0), cells - 1)
                lo, hi = table[g], table[g + 1]
            # the grid's arithmetic may round a time into a neighbouring cell: widen to the
            # channels that surely hold it, then search what is left (usually none)
            while lo > 0 and edges[lo] > t:
                lo -= 1
            while hi < n_channels - 1 and edges[hi + 1] <= t:
                hi += 1
            while lo < hi:
                mid = (lo + hi + 1) >> 1
                if edges[mid] <= t:
                    lo = mid
                else:
                    hi = mid - 1
            k = np.int64(p) * pixel_stride + np.int64(lo) * channel_stride
            index[n] = k
            if fetch_ahead:  # in cache by the time _count gets to it, up to CHUNK events on
                prefetch(flat, k)
            n += 1
        _count(flat, high, index, n)
    return skipped


@numba.njit(cache=True, nogil=True)
def _integral_index(pixel_id, tof, first_pixel, low_edge, span, inv_step, n_pixels,
                    n_channels, pixel_stride, channel_stride, index):
    """Each event's flat bin into `index` (-1: outside the histogram), and how many were
    outside. No branch and no wrap of a negative index (the loop runs over whole arrays
    from 0): the CPU's vector units compute several events at once."""
    outside = 0
    for i in range(len(tof)):
        p = np.int64(pixel_id[i]) - first_pixel
        d = np.int64(tof[i]) - low_edge
        # negatives wrap to the top of uint64: one comparison each for both bounds
        inside = (np.uint64(p) < np.uint64(n_pixels)) & (np.uint64(d) < np.uint64(span))
        # a whole time d past whole boundaries a whole step w apart: (d + 0.5) / w is at
        # least 0.5 / w from a whole number, far beyond the product's rounding for any d
        # below 2^32, so its floor is the channel, exactly (an event outside computes a
        # value that is not kept)
        c = min(np.int64((d + 0.5) * inv_step), n_channels - 1)
        index[i] = p * pixel_stride + c * channel_stride if inside else -1
        outside += np.int64(not inside)
    return outside


@numba.njit(cache=True, nogil=True)
def _bin_integral(flat, n_pixels, n_channels, pixel_stride, channel_stride, pixel_id, tof,
                  first_pixel, low_edge, span, inv_step, high):
    """_bin_indexed for whole times past whole boundaries a whole step apart (GRID_INTEGRAL:
    the file writer's ISIS binning) in integers but for one multiply, each chunk's indices
    in a loop without a branch (_integral_index) that numba vectorizes: nearly 2x the
    events/s of a loop that skips each event outside as it goes (310 -> 560-600 M events/s,
    ISIS's sorted frames into 10,000 x 1,000 byte counters a channel a row, one core;
    random frames 300 -> 420-470)."""
    _check_arrays(flat, n_pixels, n_channels, pixel_id, tof, high)
    index = np.empty(CHUNK, np.int64)
    skipped = 0
    for start in range(0, len(tof), CHUNK):
        stop = min(start + CHUNK, len(tof))
        skipped += _integral_index(pixel_id[start:stop], tof[start:stop], first_pixel,
                                   low_edge, span, inv_step, n_pixels, n_channels,
                                   pixel_stride, channel_stride, index)
        _count(flat, high, index, stop - start)
    return skipped


def wide_counts(low: np.ndarray, high: np.ndarray, first: int, stop: int,
                into: np.ndarray | None = None) -> np.ndarray:
    """The counts of rows first..stop of a histogram kept as EdgeIndex.bin's byte counters
    (low (pixels, channels) uint8, either order; high: their 256s, flat in low's order) as
    int32 (rows, channels), a row a pixel: what a file takes. Past 2^31 in one bin (which no
    run reaches) clipped, not wrapped. One pass in low's own order, where numpy's widen,
    multiply, add and clip over a channel-major histogram took 0.075 s a 10,000 x 1,000
    histogram, at the close of every ICP run (two thirds of its write). `into`: an earlier
    result of the same rows, which these counts are added to (clipped alike) and returned:
    the sum of two tallies in the same one pass."""
    n_pixels, n_channels = low.shape
    stop = max(first, min(stop, n_pixels))  # as a slice would: past the end, to the end
    add = into is not None
    out = into if add else np.empty((stop - first, n_channels), np.int32)
    if out.shape != (stop - first, n_channels) or out.dtype != np.int32:
        raise ValueError("wide_counts: `into` is not these rows' int32 counts")
    if low.flags.f_contiguous and not low.flags.c_contiguous:  # channel_major()
        _widen(low.T, high.reshape(n_channels, n_pixels), first, stop, out.T, add)
    else:
        _widen(low[first:stop], high.reshape(n_pixels, n_channels)[first:stop], 0,
               n_channels, out, add)
    return out


@numba.njit(cache=True, nogil=True)
def _widen(low, high, first, stop, out, add):
    # low, high: (rows, columns) with `first..stop` along columns; out: (rows, stop - first)
    # (a transposed view for a channel-major histogram: reads in order, writes strided)
    top = np.int64(2**31 - 1)
    for r in range(low.shape[0]):
        for c in range(first, stop):
            value = np.int64(high[r, c]) * 256 + np.int64(low[r, c])
            if add:
                value += np.int64(out[r, c - first])
            out[r, c - first] = value if value < top else top


@numba.njit(cache=True, nogil=True)
def _sparse_add(keys, counts, key):
    mask = len(keys) - 1
    h = (key * 0x9E3779B97F4A7C15) & mask  # Fibonacci hashing: neighbouring bins spread
    while True:
        k = keys[h]
        if k == key:
            counts[h] += 1
            return 0
        if k == -1:
            keys[h] = key
            counts[h] = 1
            return 1
        h = (h + 1) & mask


@numba.njit(cache=True, nogil=True)
def bin_sparse(keys, counts, pixel_id, tof, first_pixel, n_pixels, tof_min, tof_max,
               n_channels, max_new):
    """As bin_linear into the table (keys, counts), in chunks as bin_linear is (the keys
    first, then the table's probes). Stops early once max_new new bins were taken (the
    caller grows the table and calls again from the returned position).
    Returns (events done, new bins, skipped)."""
    if len(pixel_id) != len(tof):
        raise ValueError("bin_sparse: pixel ids and times of flight differ in length")
    scale = n_channels / (tof_max - tof_min)
    chunk = np.empty(CHUNK, np.int64)
    new = 0
    skipped = 0
    start = 0
    while start < len(tof):
        stop = min(start + CHUNK, len(tof))
        for i in range(start, stop):
            p = pixel_id[i] - first_pixel
            t = tof[i]
            if p < 0 or p >= n_pixels or not (t >= tof_min and t < tof_max):
                chunk[i - start] = -1
                continue
            c = _linear_channel(t, tof_min, scale, n_channels)
            if c < 0:
                chunk[i - start] = -1
                continue
            chunk[i - start] = np.int64(p) * n_channels + c
        for i in range(start, stop):
            if new >= max_new:
                return i, new, skipped
            key = chunk[i - start]
            if key < 0:
                skipped += 1
            else:
                new += _sparse_add(keys, counts, key)
        start = stop
    return start, new, skipped


@numba.njit(cache=True)
def _rehash(keys, counts, new_keys, new_counts):
    for h in range(len(keys)):
        key = keys[h]
        if key != -1:
            mask = len(new_keys) - 1
            j = (key * 0x9E3779B97F4A7C15) & mask
            while new_keys[j] != -1:
                j = (j + 1) & mask
            new_keys[j] = key
            new_counts[j] = counts[h]


class SparseHistogram:
    """Counts of (pixel, channel) bins that were hit, for instruments too large to hold
    densely. Load factor kept under one half."""

    def __init__(self, n_pixels: int, n_channels: int, first_pixel: int, tof_min: float,
                 tof_max: float, capacity: int = 1 << 20) -> None:
        self.n_pixels, self.n_channels, self.first_pixel = n_pixels, n_channels, first_pixel
        self.tof_min, self.tof_max = float(tof_min), float(tof_max)
        self.keys = np.full(capacity, _EMPTY, np.int64)
        self.counts = np.zeros(capacity, np.uint32)
        self.used = 0

    def add(self, pixel_id: np.ndarray, tof: np.ndarray) -> int:
        """Bin events; returns how many were skipped (outside pixels or time)."""
        done, skipped = 0, 0
        while done < len(tof):
            room = len(self.keys) // 2 - self.used
            if room <= 0:
                self._grow()
                continue
            n, new, out = bin_sparse(self.keys, self.counts, pixel_id[done:], tof[done:],
                                     self.first_pixel, self.n_pixels, self.tof_min,
                                     self.tof_max, self.n_channels, room)
            done += n
            self.used += new
            skipped += out
        return skipped

    def _grow(self) -> None:
        keys = np.full(len(self.keys) * 2, _EMPTY, np.int64)
        counts = np.zeros(len(keys), np.uint32)
        _rehash(self.keys, self.counts, keys, counts)
        self.keys, self.counts = keys, counts

    def total(self) -> int:
        return int(self.counts.sum(dtype=np.uint64))

    def nbytes(self) -> int:
        return self.keys.nbytes + self.counts.nbytes

    def spectrum(self, pixel: int) -> np.ndarray:
        """The time-channel counts of one pixel (by id)."""
        out = np.zeros(self.n_channels, np.uint32)
        hit = self.keys >= 0
        rows = self.keys[hit] // self.n_channels
        mine = rows == pixel - self.first_pixel
        out[self.keys[hit][mine] % self.n_channels] = self.counts[hit][mine]
        return out


def warm_up() -> None:
    """Load (or compile) the kernels now, on a few events: a service calls this as it starts,
    so its first run does not spend half a second in numba's cache before binning. Events
    decoded from a message are read-only views of it, which numba compiles apart; ids of a
    reader's own making (a spectrum map's rows, a monitor's) beside read-only times too."""
    for ids_writable, tof_writable in ((True, True), (False, False), (True, False)):
        hist = np.zeros((2, 4), np.uint32)
        ids, tof = np.ones(3, np.int32), np.array([1, 2, 3], np.int32)
        ids.flags.writeable, tof.flags.writeable = ids_writable, tof_writable
        bin_linear(hist, ids, tof, 1, 0.0, 4.0, 4)
        bin_edges(hist, ids, tof, 1, np.arange(5, dtype=np.float64))
        index = EdgeIndex(np.arange(5, dtype=np.float64))
        index.bin(hist, ids, tof, 1)
        index.bin(hist.astype(np.uint8), ids, tof, 1, np.zeros(hist.size, np.uint32))
        index.bin(channel_major(2, 4), ids, tof, 1, np.zeros(hist.size, np.uint32))
    for low in (np.zeros((2, 4), np.uint8), channel_major(2, 4)):
        wide_counts(low, np.zeros(low.size, np.uint32), 0, 2,
                    wide_counts(low, np.zeros(low.size, np.uint32), 0, 2))
