"""When the live view sheds load. Counting is cheap (the length of a message's arrays) and
binning is not (a random write per event), so under overload the live view keeps counting
every event, which keeps EVENTS and GOODFRAMES exact, and stops binning some: the spectra and
the image then miss those events, and SKIPPEDEVENTS says how many.

Overload is a lag that grows while the view reads live data: the newest pulse read is more
than `max_lag_s` older than the clock. Reading a run's history after a (re)start is not
overload: the history is finite, and the view bins all of it before it first calls itself
caught up (lag under CAUGHT_UP_S). Shedding stops again once the lag is under half the limit,
so the view does not flap at the edge. Pure: lags in, a decision out."""

from __future__ import annotations

CAUGHT_UP_S = 2.0


class LoadShedder:
    def __init__(self, max_lag_s: float = 30.0) -> None:
        if max_lag_s <= CAUGHT_UP_S:
            raise ValueError(f"max_lag_s must be above {CAUGHT_UP_S} s")
        self.max_lag_s = max_lag_s
        self.caught_up = False
        self.shedding = False

    def restart(self) -> None:
        """A new run (or a seek): its history is read in full first."""
        self.caught_up = self.shedding = False

    def bin_next(self, lag_s: float) -> bool:
        """Whether to bin a message whose newest pulse is `lag_s` old; False: count only."""
        if not self.caught_up:
            self.caught_up = lag_s < CAUGHT_UP_S
            return True
        if self.shedding:
            self.shedding = lag_s > self.max_lag_s / 2
        else:
            self.shedding = lag_s > self.max_lag_s
        return not self.shedding
