"""When `datastream up` restarts a service that died: as systemd does (StartLimitBurst within
StartLimitIntervalSec), a service is restarted after a back-off that grows with its recent
restarts, and given up only when it failed `burst` times within `window_s` seconds, so one
crash a week is always restarted. Pure: times in, decisions out; the supervisor's loop never
sleeps on one service, so another's death is noticed meanwhile."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path

# in the data dir: which services a running `up` has given up
SUPERVISOR_STATE = "supervisor.json"
RESTART_BURST = 5
RESTART_WINDOW_S = 300.0
MAX_BACKOFF_S = 30.0


@dataclass
class RestartPolicy:
    burst: int = RESTART_BURST
    window_s: float = RESTART_WINDOW_S
    max_backoff_s: float = MAX_BACKOFF_S
    _restarts: dict[str, collections.deque[float]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)

    def _recent(self, name: str, now: float) -> collections.deque[float]:
        times = self._restarts.setdefault(name, collections.deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def died(self, name: str, now: float) -> str:
        """A service was found dead: "restart" at due(), or "give up" (said once: the
        caller prints it), or "wait" (given up already, or a restart already due)."""
        if name in self.given_up or name in self._due:
            return "wait"
        recent = self._recent(name, now)
        if len(recent) >= self.burst:
            self.given_up.add(name)
            return "give up"
        self._due[name] = now + min(self.max_backoff_s, 2.0 ** len(recent))
        return "restart"

    def due(self, name: str, now: float) -> bool:
        """Whether a restart decided on is due now; if so it is counted."""
        at = self._due.get(name)
        if at is None or now < at:
            return False
        del self._due[name]
        self._recent(name, now).append(now)
        return True

    def restarts(self, name: str, now: float) -> int:
        return len(self._recent(name, now))

    def save(self, path: Path) -> None:
        """What `datastream doctor` reads: the services given up."""
        path.write_text(json.dumps({"given_up": sorted(self.given_up),
                                    "burst": self.burst, "window_s": self.window_s}))


def given_up(path: Path) -> list[str]:
    """The services a running `up` has given up (none if it wrote nothing)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    names = state.get("given_up", []) if isinstance(state, dict) else []
    return [str(n) for n in names] if isinstance(names, list) else []
