"""The file writer's ICP histogram kernel alone (EdgeIndex.bin into byte counters that carry
into uint32, as filewriter/modules/isis_histogram.py keeps them): the same ISIS frames binned
into a spectrum-a-row histogram (the order the file holds) and into a channel-a-row one
(channel_major, the order the writer bins into), side by side, for frames sorted by time of
flight (as ISIS's DAE sends them) and for frames in random order; with linear time channels
(whole ns: the integral loop, its indices vectorized) and with logarithmic ones (the general
loop, with its fetch-ahead, datastream/prefetch.py, and without it).

Frames as benchmarks/filewriter_throughput.py makes them: --per-message events a message, 64
different frames in turn, pixel ids uniform over --spectra, times uniform over a 100 ms
frame; 1,000 channels of 100 µs, or 1,000 from 100 µs to 100 ms in equal ratios (the 0.1 %
of events before 100 µs skipped). Figures: M events/s on one core, the median of --repeats.

    .venv/bin/python benchmarks/icp_binning.py [--messages 1000] [--spectra 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from datastream.binning import EdgeIndex, channel_major

FRAME_NS = 100_000_000
CHANNELS = 1000
DISTINCT_FRAMES = 64


def frames(per_message: int, spectra: int, sort: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(DISTINCT_FRAMES):
        tof = rng.integers(0, FRAME_NS, per_message, dtype=np.int32)
        ids = rng.integers(1, spectra + 1, per_message, dtype=np.int32)
        if sort:
            order = np.argsort(tof, kind="stable")
            tof, ids = tof[order], ids[order]
        out.append((tof, ids))
    return out


def rate(index: EdgeIndex, low: np.ndarray, pool: list, messages: int,
         fetch_ahead: bool) -> float:
    high = np.zeros(low.size, np.uint32)
    index.bin(low, pool[0][1], pool[0][0], 1, high)  # compiled and the pages taken first
    t0 = time.perf_counter()
    for k in range(messages):
        tof, ids = pool[k % len(pool)]
        index.bin(low, ids, tof, 1, high, fetch_ahead)
    return messages * len(pool[0][0]) / (time.perf_counter() - t0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--per-message", type=int, default=100_000)
    parser.add_argument("--spectra", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    linear = EdgeIndex(np.arange(CHANNELS + 1) * (FRAME_NS / CHANNELS))
    log = EdgeIndex(np.geomspace(FRAME_NS / CHANNELS, FRAME_NS, CHANNELS + 1))
    print(f"{args.spectra:,} spectra x {CHANNELS:,} channels, a byte a bin; "
          f"{args.messages} messages of {args.per_message:,} events; M events/s, one core")
    layouts = {"a spectrum a row": lambda: np.zeros((args.spectra, CHANNELS), np.uint8),
               "a channel a row": lambda: channel_major(args.spectra, CHANNELS)}
    # (time channels, fetch-ahead): the integral loop has none
    kernels = {"linear": (linear, False), "log": (log, True), "log, none": (log, False)}
    print(f"{'':26} " + " ".join(f"{name:>30}" for name in layouts))
    print(f"{'frames':26} " + " ".join(" ".join(f"{k:>9}" for k in kernels) for _ in layouts))
    for sort in (True, False):
        pool = frames(args.per_message, args.spectra, sort)
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):  # in turn: a busy spell of the machine falls on all
            for name, zeros in layouts.items():
                for kernel, (index, ahead) in kernels.items():
                    rates.setdefault((name, kernel), []).append(
                        rate(index, zeros(), pool, args.messages, ahead))
        label = "sorted by time of flight" if sort else "in random order"
        print(f"{label:26} " + " ".join(" ".join(
            f"{statistics.median(rates[name, kernel]):9.0f}" for kernel in kernels)
            for name in layouts))

if __name__ == "__main__":
    main()
