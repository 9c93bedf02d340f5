"""The replay's progress line on stderr: events sent and their rate, at most one line per
interval however fast the pulses go (so a terminal or a journal is not flooded)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, label: str, run_seconds: float, interval_s: float = 2.0,
                 out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._label = label
        self._run_seconds = run_seconds
        self._interval = interval_s
        self._out = out or sys.stderr
        self._clock = clock
        self.started = clock()
        self._last_time = self.started
        self._last_events = 0
        self.events = 0
        self.pulses = 0
        self.log_values = 0

    def frame(self, events: int, run_seconds_done: float) -> None:
        self.events += events
        self.pulses += 1
        now = self._clock()
        if now - self._last_time >= self._interval:
            rate = (self.events - self._last_events) / (now - self._last_time)
            self._print(f"{self._label}: {self.events:,} events, {self.pulses:,} pulses, "
                        f"{run_seconds_done:,.1f} of {self._run_seconds:,.1f} s of the run, "
                        f"{rate / 1e6:.2f} M events/s")
            self._last_time, self._last_events = now, self.events

    def summary(self) -> str:
        elapsed = max(self._clock() - self.started, 1e-9)
        return (f"{self._label}: {self.events:,} events in {self.pulses:,} pulses and "
                f"{self.log_values:,} log values in {elapsed:.1f} s "
                f"({self.events / elapsed / 1e6:.2f} M events/s)")

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)
