"""What run control needs of a DAE, and what a DAE reports: the simulated DAE
(ioc.simulated_dae) is one; a real DAE's stream can stand in its place by implementing Dae."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DaeCounters:
    total_counts: int = 0  # events of good frames
    good_frames: int = 0
    raw_frames: int = 0  # every frame, vetoed ones too
    count_rate: float = 0.0  # events per second over the last second of frames
    delivery_errors: int = 0
    good_uah: float = 0.0  # proton charge on target during good frames, micro-amp hours
    # per period, period 1 first (ISISDAE's _PD counters are of the current period)
    period_good_frames: tuple[int, ...] = (0,)
    period_good_uah: tuple[float, ...] = (0.0,)
    period: int = 1  # the period frames count into now (software periods: PERIOD:SP)
    monitor_counts: int = 0  # the beam monitors' events
    period_seconds: tuple[float, ...] = (0.0,)  # time counted in each period
    beam_current_ua: float = 0.0  # on target now (0 while not counting)
    raw_uah: float = 0.0  # proton charge of every frame
    period_raw_frames: tuple[int, ...] = (0,)
    vetoed_frames: tuple[tuple[str, int], ...] = ()  # (veto, frames it stopped)

    def of_period(self, period: int) -> tuple[int, int, float, float]:
        """(good frames, raw frames, good µAh, seconds) of a period (from 1); 0s if none."""
        i = period - 1

        def at(values: tuple, zero: float | int) -> float | int:
            return values[i] if 0 <= i < len(values) else zero

        return (int(at(self.period_good_frames, 0)), int(at(self.period_raw_frames, 0)),
                float(at(self.period_good_uah, 0.0)), float(at(self.period_seconds, 0.0)))


@dataclass(frozen=True)
class PeriodPlan:
    """Which period each frame counts into. Software periods (`hardware` empty): the current
    period, which PERIOD:SP chooses. Hardware periods: the DAE steps through `hardware`, each
    (period from 0, frames, dwell) for its frames, then again; a dwell period's frames send
    no events."""

    number: int = 1
    hardware: tuple[tuple[int, int, bool], ...] = ()

    def __post_init__(self) -> None:
        if self.number < 1 or any(not 0 <= p < self.number for p, _, _ in self.hardware):
            raise ValueError(f"periods: {self.number}, each frame's period between 1 and it")
        if self.hardware and sum(n for _, n, _ in self.hardware) < 1:
            raise ValueError("hardware periods: no slot with frames")

    @classmethod
    def every_frame(cls, periods: int) -> PeriodPlan:
        """[dae] periods = N: frame k of a run in period k mod N."""
        if periods <= 1:
            return cls()
        return cls(periods, tuple((p, 1, False) for p in range(periods)))

    def of_frame(self, frame: int, current: int) -> tuple[int, bool]:
        """(period from 0, dwell) of a run's frame `frame` (from 0)."""
        if not self.hardware:
            return current, False
        cycle = sum(n for _, n, _ in self.hardware)
        k = frame % cycle
        for period, n, dwell in self.hardware:
            if k < n:
                return period, dwell
            k -= n
        raise AssertionError("unreachable: k < cycle")


class Dae(Protocol):
    def begin(self, start_ns: int, paused: bool = False) -> None: ...
    def pause(self, at_ns: int) -> None: ...
    def resume(self, at_ns: int) -> None: ...
    def end(self, stop_ns: int) -> DaeCounters: ...
    def flush(self, timeout: float) -> int: ...
    def restore(self, counters: DaeCounters) -> None: ...
    def counters(self) -> DaeCounters: ...
    @property
    def periods(self) -> int: ...
    def set_periods(self, plan: PeriodPlan) -> None: ...
    def set_period(self, period: int) -> None: ...
    def set_vetoes(self, enabled: frozenset[str]) -> None: ...
