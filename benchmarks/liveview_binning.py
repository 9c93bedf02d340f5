"""Binning ev44 messages into pixel x time-of-flight histograms: the live view's numba
kernel against plain numpy (np.bincount over a linear bin index, the fastest numpy way; and
np.histogram2d), in one run, for three instrument sizes:

  (a) 4k pixels x 1,000 channels     dense uint32, 16 MB
  (b) 16k pixels x 8,000 channels    dense uint32, 512 MB
  (c) 1M pixels x 8,000 channels     sparse table (dense would be 32 GB)

Each figure is events per second on one core, the ev44 decoding included, the median of
--repeats runs. "memory bound" is no method but this machine's ceiling for the same
histogram: the increments alone, of bin indices computed beforehand; above the caches every
event is a random read and write of memory, and no kernel can beat that row.
Anchors (from the issue): kafka_dae_diagnostics' compiled Rust kernel
67-85 M events/s per core; numpy 5-6 M/s.

    .venv/bin/python benchmarks/liveview_binning.py [--events 20000000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from streaming_data_types.eventdata_ev44 import deserialise_ev44, serialise_ev44

from datastream.binning import SparseHistogram, _add, bin_linear

TOF_MAX_NS = 100_000_000.0  # a 10 Hz frame, in ns
SIZES = {"a": (4096, 1000), "b": (16384, 8000), "c": (1 << 20, 8000)}


def messages(n_events: int, pixels: int, per_message: int, seed: int = 7) -> list[bytes]:
    """ev44 frames of a powder-like spread: pixels uniform, time of flight a broad peak."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(0, n_events, per_message):
        n = min(per_message, n_events - k)
        pixel = rng.integers(1, pixels + 1, n, dtype=np.int32)
        tof = np.clip(rng.gamma(4.0, 0.15 * TOF_MAX_NS / 4, n), 0, TOF_MAX_NS - 1)
        out.append(serialise_ev44("DAE", k, np.array([k], np.int64), np.array([0], np.int32),
                                  tof.astype(np.int32), pixel))
    return out


def run_numba(frames, pixels, channels):
    if pixels * channels > 1 << 30:
        hist = SparseHistogram(pixels, channels, 1, 0.0, TOF_MAX_NS, capacity=1 << 26)
        t0 = time.perf_counter()
        for payload in frames:
            ev = deserialise_ev44(payload)
            hist.add(ev.pixel_id, ev.time_of_flight)
        return time.perf_counter() - t0, hist.total(), hist.nbytes()
    hist = _touched(pixels, channels)
    t0 = time.perf_counter()
    for payload in frames:
        ev = deserialise_ev44(payload)
        bin_linear(hist, ev.pixel_id, ev.time_of_flight, 1, 0.0, TOF_MAX_NS, channels)
    return time.perf_counter() - t0, int(hist.sum(dtype=np.uint64)), hist.nbytes


def _touched(pixels, channels):
    # every page faulted in before timing, as in a live view that has been running
    hist = np.zeros((pixels, channels), np.uint32)
    hist.fill(0)
    return hist


def bin_indices(frames, channels) -> list[np.ndarray]:
    """Each message's events as flat bin indices (pixel - 1) * channels + channel."""
    scale = channels / TOF_MAX_NS
    out = []
    for payload in frames:
        ev = deserialise_ev44(payload)
        out.append((ev.pixel_id.astype(np.int64) - 1) * channels
                   + (ev.time_of_flight * scale).astype(np.int64))
    return out


def run_ceiling(frames, pixels, channels):
    """This machine's bound, not a method: only the increments, of bin indices computed
    beforehand (no decoding, no arithmetic), into the same histogram. For a histogram far
    larger than the caches this is one random memory read and write per event."""
    hist = _touched(pixels, channels)
    index = bin_indices(frames, channels)
    flat = hist.reshape(-1)
    t0 = time.perf_counter()
    for chunk in index:
        _add(flat, chunk, len(chunk))
    return time.perf_counter() - t0, int(hist.sum(dtype=np.uint64)), hist.nbytes


def run_bincount(frames, pixels, channels):
    """numpy's best case: every event's bin index first, then one bincount of them all (a
    live view cannot wait for all; per message, bincount allocates the whole histogram)."""
    t0 = time.perf_counter()
    index = bin_indices(frames, channels)
    hist = np.bincount(np.concatenate(index), minlength=pixels * channels)
    return time.perf_counter() - t0, int(hist.sum()), hist.nbytes


def run_histogram2d(frames, pixels, channels):
    hist = np.zeros((pixels, channels))
    edges = [np.arange(pixels + 1) + 0.5, np.linspace(0, TOF_MAX_NS, channels + 1)]
    t0 = time.perf_counter()
    for payload in frames:
        ev = deserialise_ev44(payload)
        hist += np.histogram2d(ev.pixel_id, ev.time_of_flight, bins=edges)[0]
    return time.perf_counter() - t0, int(hist.sum()), hist.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--per-message", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="abc")
    args = parser.parse_args()
    warm = messages(10_000, 16, 10_000)
    run_numba(warm, 16, 10)  # compile before timing
    SparseHistogram(16, 10, 1, 0.0, TOF_MAX_NS).add(np.array([1], np.int32),
                                                    np.array([5], np.int32))
    print(f"{args.events:,} events in ev44 messages of {args.per_message:,}; one core; "
          f"median of {args.repeats}")
    print(f"{'size':<28}{'method':<16}{'M events/s':>11}{'memory MB':>11}")
    for key in args.sizes:
        pixels, channels = SIZES[key]
        frames = messages(args.events, pixels, args.per_message)
        methods = [("numba (ours)", run_numba)]
        if pixels * channels <= 1 << 30:
            methods.append(("memory bound", run_ceiling))
        if pixels * channels <= 1 << 27:  # numpy's dense int64 array fits here
            methods.append(("np.bincount", run_bincount))
        if pixels * channels <= 1 << 23:  # a float64 histogram2d per message
            methods.append(("np.histogram2d", run_histogram2d))
        for name, method in methods:
            times, total, nbytes = [], 0, 0
            for _ in range(args.repeats if name.startswith(("numba", "memory")) else 1):
                elapsed, total, nbytes = method(frames, pixels, channels)
                times.append(elapsed)
            rate = args.events / statistics.median(times) / 1e6
            label = f"({key}) {pixels:,} x {channels:,}"
            print(f"{label:<28}{name:<16}{rate:>11.1f}{nbytes / 2**20:>11.0f}"
                  + ("" if total == args.events else f"   (binned {total:,})"), flush=True)
    print("memory bound: increments alone of bin indices computed beforehand, on this machine")
    print("anchors: kafka_dae_diagnostics Rust kernel 67-85 M/s per core; numpy 5-6 M/s")


if __name__ == "__main__":
    main()
