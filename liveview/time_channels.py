"""Time-channel boundaries, as the DAE's TCB settings give them: linear (equal widths) or
logarithmic (each channel wider by a constant ratio), in ns of time of flight."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimeChannels:
    tof_min_ns: float = 0.0
    tof_max_ns: float = 100_000_000.0  # a 10 Hz frame
    channels: int = 1000
    logarithmic: bool = False

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError("time channels: at least one channel")
        if not self.tof_max_ns > self.tof_min_ns:
            raise ValueError("time channels: the maximum must be above the minimum")
        if self.logarithmic and self.tof_min_ns <= 0:
            raise ValueError("logarithmic time channels need a minimum above zero")

    def edges(self) -> np.ndarray:
        if self.logarithmic:
            return np.geomspace(self.tof_min_ns, self.tof_max_ns, self.channels + 1)
        return np.linspace(self.tof_min_ns, self.tof_max_ns, self.channels + 1)

    def centres(self) -> np.ndarray:
        edges = self.edges()
        return (edges[:-1] + edges[1:]) / 2
