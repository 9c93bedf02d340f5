"""Which data belong in a file: the run window (shared, datastream.run_window), applied to
pulses and to log updates."""

from __future__ import annotations

from datastream.run_window import Window, pulses_in_window

__all__ = ["LogGate", "Window", "pulses_in_window"]


class LogGate:
    """Per source: keep the last update before start (the value the run began with), every
    update inside the run, one update per timestamp, nothing after stop. An update older
    than the last one written is still written, and counted."""

    def __init__(self) -> None:
        self._pending: object | None = None
        self._last_written_ns: int | None = None
        self.out_of_order = 0

    def offer(self, t_ns: int, item: object, window: Window) -> list[object]:
        """Returns the items to write now, oldest first."""
        if t_ns < window.start_ns:
            self._pending = (t_ns, item)
            return []
        if window.after(t_ns) or t_ns == self._last_written_ns:
            return []
        out = self.flush_pending()
        if self._last_written_ns is not None and t_ns < self._last_written_ns:
            self.out_of_order += 1
        self._last_written_ns = t_ns
        out.append(item)
        return out

    def flush_pending(self) -> list[object]:
        if self._pending is None:
            return []
        t_ns, item = self._pending
        self._pending = None
        self._last_written_ns = t_ns
        return [item]
