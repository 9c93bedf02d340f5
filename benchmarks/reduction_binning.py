"""The live reduction's kernel (each event's time of flight to d-spacing by its pixel's DIFC,
then binned into I(d) per bank and I(2θ, d)) against plain time-of-flight binning
(datastream.binning.bin_linear into pixels x channels, what the live view does anyway) on the
same events, side by side: events per second on one core, kernels only (the events decoded
beforehand), the median of --repeats runs. The goal: the reduction at least half as fast.

The events: a powder in iocBoot/DEMO's geometry (4,096 pixels), drawn as the simulated DAE
draws them (ioc.simulated_dae.PowderGenerator), a 10 Hz frame; in messages of --per-message.

    .venv/bin/python benchmarks/reduction_binning.py [--events 20000000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from datastream.binning import bin_linear
from datastream.geometry import load_geometry
from datastream.paths import IOCBOOT_DIR
from ioc.simulated_dae import DaeSettings, PowderGenerator
from liveview.reduction import Bins, Reduction, ReductionSettings
from liveview.reduction_binning import warm_up

FRAME_NS = 100_000_000  # 10 Hz


def events(n: int, per_message: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], object]:
    geometry = load_geometry(IOCBOOT_DIR / "DEMO" / "geometry.toml")
    settings = DaeSettings(seed=3, events_per_frame=per_message, frame_rate_hz=10.0)
    powder = PowderGenerator(settings, geometry, pool_size=max(n, 1 << 18))
    tof, ids = powder.time_of_flight[:n], powder.pixel_id[:n]
    return [(ids[k:k + per_message], tof[k:k + per_message])
            for k in range(0, n, per_message)], geometry


def time_it(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--per-message", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=1000, help="TOF channels")
    parser.add_argument("--d-bins", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames, geometry = events(args.events, args.per_message)
    n = sum(len(t) for _, t in frames)
    pixels = int(geometry.pixel_ids().max())
    warm_up()

    hist = np.zeros((pixels, args.channels), np.uint32)
    hist[:] = 0  # touched: page faults are not binning

    def plain() -> None:
        for ids, tof in frames:
            bin_linear(hist, ids, tof, 1, 0.0, float(FRAME_NS), args.channels)

    rows = [("TOF, bin_linear", f"{pixels} x {args.channels}", time_it(plain, args.repeats))]
    for log in (False, True):
        reduction = Reduction(geometry, ReductionSettings(
            dspacing=Bins(0.3, 5.0, args.d_bins, log)))

        def reduce(reduction: Reduction = reduction) -> None:
            for ids, tof in frames:
                reduction.add(ids, tof)

        rows.append((f"d-spacing, {'log' if log else 'linear'}",
                     f"({len(geometry.banks)} banks + 90 2θ) x {args.d_bins}",
                     time_it(reduce, args.repeats)))
    base = n / rows[0][2]
    print(f"{n:,} events in messages of {args.per_message:,}, one core, median of "
          f"{args.repeats}")
    print(f"{'kernel':<22}{'histogram':<32}{'M events/s':>12}{'of plain':>10}")
    for name, shape, seconds in rows:
        rate = n / seconds
        print(f"{name:<22}{shape:<32}{rate / 1e6:>12.1f}{rate / base:>10.0%}")


if __name__ == "__main__":
    main()
