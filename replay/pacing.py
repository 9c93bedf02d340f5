"""When each message may go: at the run's own pace times `speed` (0: at once), and never
further ahead of the wall clock than `max_lead_ns`. Kafka refuses a message stamped too far
in the future (log.message.timestamp.after.max.ms, one hour by default since Kafka 4.0), and
a replay at speed 0 stamps messages with the run's future times."""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_MAX_LEAD_S = 1800.0


class Pacer:
    def __init__(self, speed: float, start_ns: int, max_lead_ns: int,
                 wait: Callable[[float], None], clock: Callable[[], int] = time.time_ns
                 ) -> None:
        """`start_ns`: the run's (shifted) start, which is now; `wait(seconds)` idles (the
        caller serves its producer meanwhile)."""
        self._speed = speed
        self._start_ns = start_ns
        self._wall_start_ns = clock()
        self._max_lead_ns = max_lead_ns
        self._wait = wait
        self._clock = clock

    def due_ns(self, t_ns: int) -> int:
        """The wall-clock time a message of (shifted) time t_ns may go."""
        due = t_ns - self._max_lead_ns
        if self._speed > 0:
            due = max(due, self._wall_start_ns + round((t_ns - self._start_ns) / self._speed))
        return due

    def wait_for(self, t_ns: int) -> None:
        due = self.due_ns(t_ns)
        while True:
            ahead = due - self._clock()
            if ahead <= 0:
                return
            self._wait(ahead / 1e9)
