"""The binning kernels against numpy's own histogram on random events."""

from __future__ import annotations

import numpy as np
import pytest

from datastream.binning import (
    CHUNK,
    SparseHistogram,
    bin_edges,
    bin_linear,
    channel_major,
    wide_counts,
)


def _events(n, pixels, first, tof_max, seed=1):
    rng = np.random.default_rng(seed)
    pixel = rng.integers(first - 3, first + pixels + 3, n, dtype=np.int32)  # some outside
    tof = rng.uniform(-100, tof_max * 1.05, n).astype(np.float64).astype(np.int32)
    return pixel, tof


def _reference(pixel, tof, first, pixels, edges):
    # histogram2d closes its last bins ([a, b]); every channel here is [a, b)
    keep = (pixel - first < pixels) & (tof < edges[-1])
    ref, _, _ = np.histogram2d(pixel[keep] - first, tof[keep],
                               bins=[np.arange(pixels + 1), edges])
    return ref


def test_linear_channels_match_histogram2d():
    pixels, first, channels, tof_max = 64, 1, 100, 100_000.0
    pixel, tof = _events(200_000, pixels, first, tof_max)
    hist = np.zeros((pixels, channels), np.uint32)
    skipped = bin_linear(hist, pixel, tof, first, 0.0, tof_max, channels)
    ref = _reference(pixel, tof, first, pixels, np.linspace(0, tof_max, channels + 1))
    np.testing.assert_array_equal(hist, ref)
    assert skipped == len(tof) - ref.sum()


def test_log_channels_match_histogram2d():
    pixels, first = 32, 100
    edges = np.geomspace(10.0, 100_000.0, 51)
    pixel, tof = _events(100_000, pixels, first, 100_000.0, seed=2)
    hist = np.zeros((pixels, len(edges) - 1), np.uint32)
    skipped = bin_edges(hist, pixel, tof, first, edges)
    ref = _reference(pixel, tof, first, pixels, edges)
    np.testing.assert_array_equal(hist, ref)
    assert skipped == len(tof) - ref.sum()


def test_sparse_counts_equal_dense_and_the_table_grows():
    pixels, first, channels, tof_max = 500, 1, 40, 1000.0
    pixel, tof = _events(300_000, pixels, first, tof_max, seed=3)
    dense = np.zeros((pixels, channels), np.uint32)
    bin_linear(dense, pixel, tof, first, 0.0, tof_max, channels)
    sparse = SparseHistogram(pixels, channels, first, 0.0, tof_max, capacity=64)
    skipped = sparse.add(pixel, tof)
    assert sparse.total() == dense.sum() and skipped == len(tof) - dense.sum()
    assert len(sparse.keys) > 64  # it grew
    for p in (first, first + 17, first + pixels - 1):
        np.testing.assert_array_equal(sparse.spectrum(p), dense[p - first])


def test_linear_binning_skips_what_it_cannot_place_as_the_sparse_table_does():
    """bin_linear computes its indices without a branch (in vector registers): NaN and
    infinite times, NaN and infinite bounds, times on the top edge and ids far outside
    (past 2^31, negative) are skipped or placed exactly as the sparse table's per-event
    checks do."""
    rng = np.random.default_rng(21)
    n = 5000
    tof = rng.uniform(-50, 1100, n)
    tof[::97], tof[::101], tof[::103] = np.nan, np.inf, -np.inf
    tof[5], tof[6] = 1000.0, np.nextafter(1000.0, 0)
    for ids in (rng.integers(-5, 25, n).astype(np.int64),
                rng.integers(0, 25, n).astype(np.uint32)):
        ids[::89] = 2**31 + 3
        for lo, hi in ((0.0, 1000.0), (np.nan, 1000.0), (0.0, np.nan), (-np.inf, 1000.0),
                       (0.0, np.inf), (-30.0, 1000.0)):
            dense = np.zeros((16, 10), np.uint32)
            skipped = bin_linear(dense, ids, tof, 1, lo, hi, 10)
            sparse = SparseHistogram(16, 10, 1, lo, hi)
            assert sparse.add(ids, tof) == skipped, (ids.dtype, lo, hi)
            assert sparse.total() == dense.sum() == n - skipped
            for p in range(1, 17):
                np.testing.assert_array_equal(sparse.spectrum(p), dense[p - 1])


def test_every_chunk_boundary_is_exact():
    """The kernels work in chunks of CHUNK events: none is lost or counted twice at the
    edges, including chunks where every event is skipped."""
    pixels, first, channels, tof_max = 300, 5, 50, 10_000.0
    edges = np.linspace(0.0, tof_max, channels + 1)
    for n in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7):
        pixel, tof = _events(n, pixels, first, tof_max, seed=n)
        pixel[: min(n, CHUNK + 1)] = first - 1  # the whole first chunk outside
        hist = np.zeros((pixels, channels), np.uint32)
        skipped = bin_linear(hist, pixel, tof, first, 0.0, tof_max, channels)
        ref = _reference(pixel, tof, first, pixels, edges)
        np.testing.assert_array_equal(hist, ref)
        assert skipped == n - ref.sum()
        hist[:] = 0
        assert bin_edges(hist, pixel, tof, first, edges) == skipped
        np.testing.assert_array_equal(hist, ref)


def test_the_edge_index_bins_as_the_bisection_does_for_any_ascending_edges():
    from datastream.binning import EdgeIndex

    rng = np.random.default_rng(11)
    for n_channels in (1, 2, 7, 1000):
        # uneven channels, some a thousand times narrower than others
        widths = rng.choice([1.0, 1000.0], n_channels) * rng.uniform(0.5, 1.5, n_channels)
        edges = np.concatenate([[37.0], 37.0 + np.cumsum(widths)])
        tof = np.concatenate([rng.uniform(0, edges[-1] + 10, 20_000), edges])  # edges too
        pixel = rng.integers(0, 6, len(tof)).astype(np.int32)
        expected = np.zeros((5, n_channels), np.uint32)
        got = np.zeros((5, n_channels), np.uint32)
        skipped = bin_edges(expected, pixel, tof, 1, edges)
        assert EdgeIndex(edges).bin(got, pixel, tof, 1) == skipped
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("low", "step", "channels"), [
    (0, 100_000, 1000),  # a linear TCB of whole µs in ns
    (-7_000, 3, 5000),  # an odd step, a start before the pulse
    (2**31 - 1 - 1_000_000 * 7, 7, 1_000_000),  # a million channels up to 2^31 ns
    (5, 1, 64),
])
def test_the_edge_index_of_equal_channels_is_exact_at_every_boundary(low, step, channels):
    from datastream.binning import GRID_INTEGRAL, GRID_UNIFORM, EdgeIndex

    # times of flight on, just below and just above every boundary: the multiply that finds
    # the channel rounds, the boundaries decide (whole times by one multiply alone)
    edges = np.linspace(low, low + step * channels, channels + 1)
    index = EdgeIndex(edges)
    assert index.uniform and index.integral
    rng = np.random.default_rng(3)
    whole = edges.astype(np.int64)
    tof = np.concatenate([whole - 1, whole, whole + 1,
                          rng.integers(low - 10, low + step * channels + 10, 10_000)])
    for times in (tof.astype(np.int64), tof.astype(np.float64)):
        assert index.grid(times) == (GRID_INTEGRAL if times.dtype.kind == "i" else GRID_UNIFORM)
        pixel = np.ones(len(times), np.int32)
        expected = np.zeros((1, channels), np.uint32)
        got = np.zeros((1, channels), np.uint32)
        assert index.bin(got, pixel, times, 1) == bin_edges(expected, pixel, times, 1, edges)
        np.testing.assert_array_equal(got, expected)
    # boundaries of a step that is not whole, or not equally apart, are not integral
    assert not EdgeIndex(np.linspace(0, 1000, 3001)).integral
    assert not EdgeIndex(np.array([0.0, 1.0, 3.0])).integral


def test_whole_times_of_any_integer_type_and_size_bin_as_the_bisection_does():
    """The integral kernel (whole times, whole boundaries) takes every integer type as it
    comes: unsigned times past 2^31, int64 times far outside the frame either way, and ids
    past the histogram are skipped, as bin_edges skips them."""
    from datastream.binning import GRID_INTEGRAL, EdgeIndex

    edges = np.linspace(1000, 1000 + 250 * 40, 41)
    index = EdgeIndex(edges)
    inside = np.arange(990, 11_010, 7)
    cases = {
        np.uint32: np.concatenate([inside, [2**31, 2**32 - 1, 0]]),
        np.int64: np.concatenate([inside, [-(2**62), 2**62, 2**31 + 1000, -1]]),
        np.int32: np.concatenate([inside, [-(2**31), 2**31 - 1]]),
        np.uint16: np.concatenate([inside, [65_535]]),
    }
    for dtype, values in cases.items():
        tof = values.astype(dtype)
        assert index.grid(tof) == GRID_INTEGRAL
        pixel = np.arange(len(tof), dtype=np.int32) % 5  # 0 and 4: outside pixels 1..3
        expected = np.zeros((3, 40), np.uint32)
        got = channel_major(3, 40)
        high = np.zeros(120, np.uint32)
        skipped = bin_edges(expected, pixel, tof.astype(np.float64), 1, edges)
        assert index.bin(got, pixel, tof, 1, high) == skipped, dtype
        np.testing.assert_array_equal(got, expected)


def test_byte_counters_carry_into_high_as_they_wrap():
    from datastream.binning import EdgeIndex

    rng = np.random.default_rng(14)
    edges = np.linspace(0, 1000, 11)
    index = EdgeIndex(edges)
    # a few bins hit thousands of times (past 255, 256 and 511), the rest a few times
    pixel = np.concatenate([np.full(70_000, 3), rng.integers(0, 8, 5000)]).astype(np.int32)
    tof = np.concatenate([np.full(70_000, 150), rng.integers(-5, 1005, 5000)]).astype(np.int32)
    for n in (255, 256, 511, 70_000 + 5000):
        expected = np.zeros((6, 10), np.uint32)
        low = np.zeros((6, 10), np.uint8)
        high = np.zeros(60, np.uint32)
        skipped = index.bin(expected, pixel[:n], tof[:n], 1)
        assert index.bin(low, pixel[:n], tof[:n], 1, high) == skipped
        np.testing.assert_array_equal(high.reshape(6, 10).astype(np.int64) * 256 + low,
                                      expected)
    with pytest.raises(ValueError):
        index.bin(low, pixel, tof, 1, np.zeros(59, np.uint32))


def test_a_channel_major_histogram_bins_as_a_row_major_one():
    from datastream.binning import EdgeIndex, channel_major

    rng = np.random.default_rng(15)
    pixel = rng.integers(-1, 9, 20_000).astype(np.int32)
    tof = np.sort(rng.integers(-5, 1005, 20_000)).astype(np.int32)
    pixel[:3000] = 4  # past 255 in a few bins: the carries land in the same order
    for edges in (np.linspace(0, 1000, 11), np.array([0.0, 3.0, 100.0, 640.5, 1000.0])):
        index = EdgeIndex(edges)
        expected = np.zeros((8, len(edges) - 1), np.uint32)
        skipped = index.bin(expected, pixel, tof, 1)
        low, high = channel_major(8, len(edges) - 1), np.zeros(expected.size, np.uint32)
        assert low.flags.f_contiguous and index.bin(low, pixel, tof, 1, high) == skipped
        got = high.reshape(low.T.shape).T.astype(np.int64) * 256 + low
        np.testing.assert_array_equal(got, expected)
        wide = channel_major(8, len(edges) - 1, np.uint32)
        assert index.bin(wide, pixel, tof, 1) == skipped
        np.testing.assert_array_equal(wide, expected)
    with pytest.raises(ValueError, match="neither"):
        EdgeIndex(np.linspace(0, 1000, 11)).bin(np.zeros((8, 20), np.uint32)[:, ::2],
                                                 pixel, tof, 1)


def test_wide_counts_are_the_byte_counters_widened_either_order():
    rng = np.random.default_rng(3)
    pixels, channels = 37, 11
    expected = rng.integers(0, 70_000, (pixels, channels), dtype=np.int64)
    expected[4, 5] = 2**40  # past int32: clipped, not wrapped
    for low in (np.zeros((pixels, channels), np.uint8), channel_major(pixels, channels)):
        high_bins = np.zeros(low.T.shape, np.uint32).T if low.flags.f_contiguous else (
            np.zeros((pixels, channels), np.uint32))
        low[...] = expected % 256
        high_bins[...] = np.minimum(expected // 256, 2**32 - 1)
        high = high_bins.T.reshape(-1) if low.flags.f_contiguous else high_bins.reshape(-1)
        for first, stop in ((0, pixels), (5, 20), (36, 37), (3, 3), (30, 60)):
            got = wide_counts(low, high, first, stop)
            assert got.dtype == np.int32 and got.shape == (min(stop, pixels) - first, channels)
            assert got.tolist() == np.minimum(expected[first:stop], 2**31 - 1).tolist()
            # added to an earlier result in the same pass (two tallies' sum), clipped alike
            twice = wide_counts(low, high, first, stop, into=got.copy())
            assert twice.tolist() == np.minimum(2 * expected[first:stop], 2**31 - 1).tolist()
    with pytest.raises(ValueError, match="into"):
        wide_counts(low, high, 0, 5, into=np.zeros((4, channels), np.int32))


def test_fetching_ahead_changes_no_count_in_either_order_or_width():
    """The kernel's fetch-ahead (datastream.prefetch) only asks the CPU for memory: every
    histogram, every order and counter width, comes out as it does without it."""
    from datastream.binning import EdgeIndex

    rng = np.random.default_rng(16)
    pixel = rng.integers(-2, 40, 50_000).astype(np.int32)
    tof = rng.integers(-5, 1005, 50_000).astype(np.int32)
    pixel[:2000], tof[:2000] = 7, 500  # past 255: carries into high
    for edges in (np.linspace(0, 1000, 101), np.geomspace(1, 1000, 60)):
        index = EdgeIndex(edges)
        channels = len(edges) - 1
        for row_major in (True, False):
            counts = []
            for ahead in (False, True):
                low = (np.zeros((38, channels), np.uint8) if row_major
                       else channel_major(38, channels))
                high = np.zeros(38 * channels, np.uint32)
                skipped = index.bin(low, pixel, tof, 1, high, fetch_ahead=ahead)
                counts.append((skipped, low.tolist(), high.tolist()))
            assert counts[0] == counts[1]
            assert sum(map(sum, counts[1][1])) + 256 * sum(counts[1][2]) + counts[1][0] == (
                len(tof))


def test_prefetch_compiles_for_any_array_and_changes_nothing():
    import numba

    from datastream.prefetch import prefetch

    @numba.njit
    def touch(a, i):
        prefetch(a, i)
        return a[i]

    for a in (np.arange(10, dtype=np.uint8), np.arange(10.0)[::2],
              np.arange(12, dtype=np.int64).reshape(3, 4).T.reshape(-1)):
        before = a.copy()
        assert touch(a, 3) == before[3]
        np.testing.assert_array_equal(a, before)
    with pytest.raises(numba.TypingError):
        touch(3, 1)
