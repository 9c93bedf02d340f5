"""The binning kernels against numpy's own histogram on random events."""

from __future__ import annotations

import numpy as np

from liveview.binning import SparseHistogram, bin_edges, bin_linear, bin_linear_blocked


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


def test_the_blocked_kernel_equals_the_plain_one():
    pixels, first, channels, tof_max = 1000, 5, 300, 50_000.0
    pixel, tof = _events(400_000, pixels, first, tof_max, seed=4)
    plain = np.zeros((pixels, channels), np.uint32)
    blocked = np.zeros((pixels, channels), np.uint32)
    s1 = bin_linear(plain, pixel, tof, first, 0.0, tof_max, channels)
    s2 = bin_linear_blocked(blocked, pixel, tof, first, 0.0, tof_max, channels,
                            np.empty(2 * len(tof), np.int64))
    np.testing.assert_array_equal(blocked, plain)
    assert s1 == s2


def test_the_blocked_kernel_refuses_a_short_scratch():
    import pytest

    with pytest.raises(ValueError, match="scratch"):
        bin_linear_blocked(np.zeros((4, 4), np.uint32), np.ones(10, np.int32),
                           np.ones(10, np.int32), 1, 0.0, 10.0, 4, np.empty(5, np.int64))
