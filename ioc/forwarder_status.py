"""What the IOC knows of the forwarder, from its x5f2 status messages."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from streaming_data_types.status_x5f2 import deserialise_x5f2

from datastream.schemas import schema_id


class ForwarderState(IntEnum):
    UNAVAILABLE = 0
    RUNNING = 1
    DISCONNECTED_PVS = 2  # running, but some streams' PVs are not connected


@dataclass(frozen=True)
class ForwarderView:
    state: ForwarderState
    streams: int
    connected: int
    updates_per_s: float
    dropped: int
    heartbeat_age_s: float  # -1 until the first status


class ForwarderStatus:
    """Thread-safe: a consumer thread feeds it, the IOC's scan reads it."""

    def __init__(self, heartbeat_timeout_s: float = 6.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._timeout = heartbeat_timeout_s
        self._last: tuple[float, dict] | None = None
        self._rate = 0.0

    def on_message(self, payload: bytes) -> None:
        if schema_id(payload) != "x5f2":
            return
        status = json.loads(deserialise_x5f2(payload).status_json or "{}")
        now = self._clock()
        with self._lock:
            if self._last is not None and now > self._last[0]:
                before = self._last[1].get("updates", 0)
                self._rate = max(0.0, (status.get("updates", 0) - before) / (now - self._last[0]))
            self._last = (now, status)

    def view(self) -> ForwarderView:
        with self._lock:
            if self._last is None:
                return ForwarderView(ForwarderState.UNAVAILABLE, 0, 0, 0.0, 0, -1.0)
            seen, status = self._last
            age = self._clock() - seen
            streams = status.get("streams", [])
            connected = len({s["channel_name"] for s in streams if s.get("connected")})
            channels = len({s["channel_name"] for s in streams})
            dropped = sum(status.get(k, 0) for k in ("dropped_old", "dropped_bad_time",
                                                      "dropped_queue_full", "dropped_epics_backlog",
                                                      "delivery_errors",
                                                      "serialise_errors"))
            if age > self._timeout:
                state = ForwarderState.UNAVAILABLE
            elif connected < channels:
                state = ForwarderState.DISCONNECTED_PVS
            else:
                state = ForwarderState.RUNNING
            return ForwarderView(state, channels, connected, self._rate, dropped, age)
