"""Run numbers persisted on disk before use, so none is ever reused, also across restarts."""

from __future__ import annotations

import threading
from pathlib import Path

from datastream.durable import write_durably


class RunNumberStore:
    def __init__(self, path: Path, first: int = 1) -> None:
        self._path = path
        self._first = first
        self._lock = threading.Lock()
        # the file is this store's alone: read once, then kept as written
        self._current: int | None = None

    def current(self) -> int:
        """The last run number handed out (first - 1 if none yet)."""
        if self._current is not None:
            return self._current
        try:
            self._current = int(self._path.read_text().strip())
        except FileNotFoundError:
            return self._first - 1
        except ValueError as exc:
            raise RuntimeError(f"run number file {self._path} is corrupt: {exc}") from exc
        return self._current

    def next(self) -> int:
        """Reserve the next run number: it is on disk (fsynced) before the caller uses it."""
        with self._lock:
            number = self.current() + 1
            write_durably(self._path, f"{number}\n".encode())
            self._current = number
            return number

    def release(self, number: int) -> None:
        """Give back `number`, the last handed out, for the next run (ISISDAE reuses an
        aborted run's number). Anything else is left as it is: never a number twice in use."""
        with self._lock:
            if self.current() == number:
                write_durably(self._path, f"{number - 1}\n".encode())
                self._current = number - 1
