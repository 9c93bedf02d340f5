"""Time-channel boundaries, as the DAE's TCB settings give them: linear (equal widths) or
logarithmic (each channel wider by a constant ratio), in ns of time of flight.

Every TimeChannels is one the binning kernels can use: finite bounds within one 10 s frame
(the longest any ISIS or ESS DAE sends), at most MAX_CHANNELS channels each at least
MIN_CHANNEL_NS wide. The setpoints, the runs' pl72 TCB and the config all come through
here, so a NaN or -inf never reaches a kernel (-inf made it index with INT64_MIN)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_TOF_NS = 10e9  # 10 s
MAX_CHANNELS = 1_000_000
# narrower than the events' resolution (1 ns) is no binning: and the kernels' scale (channels
# per ns) stays finite
MIN_CHANNEL_NS = 1e-3


@dataclass(frozen=True)
class TimeChannels:
    tof_min_ns: float = 0.0
    tof_max_ns: float = 100_000_000.0  # a 10 Hz frame
    channels: int = 1000
    logarithmic: bool = False

    def __post_init__(self) -> None:
        numbers = (self.tof_min_ns, self.tof_max_ns, self.channels)
        if any(isinstance(n, bool) or not isinstance(n, int | float | np.integer | np.floating)
               for n in numbers):
            raise ValueError("time channels: the bounds and channels are numbers")
        if not isinstance(self.channels, int | np.integer):
            raise ValueError("time channels: a whole number of channels")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"time channels: from 1 to {MAX_CHANNELS:,} channels, not "
                             f"{self.channels}")
        for name in ("tof_min_ns", "tof_max_ns"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0 <= value <= MAX_TOF_NS:
                raise ValueError(f"time channels: {name[:7]} {value} ns is not within 0 to "
                                 f"{MAX_TOF_NS / 1e3:,.0f} us")
        if not self.tof_max_ns > self.tof_min_ns:
            raise ValueError("time channels: the maximum must be above the minimum")
        if self.logarithmic and self.tof_min_ns <= 0:
            raise ValueError("logarithmic time channels need a minimum above zero")
        if (self.tof_max_ns - self.tof_min_ns) / self.channels < MIN_CHANNEL_NS:
            raise ValueError(f"time channels: {self.channels:,} channels over "
                             f"{self.tof_max_ns - self.tof_min_ns} ns are narrower than "
                             f"{MIN_CHANNEL_NS} ns")

    def edges(self) -> np.ndarray:
        if self.logarithmic:
            return np.geomspace(self.tof_min_ns, self.tof_max_ns, self.channels + 1)
        return np.linspace(self.tof_min_ns, self.tof_max_ns, self.channels + 1)

    def centres(self) -> np.ndarray:
        edges = self.edges()
        return (edges[:-1] + edges[1:]) / 2
