"""Logging set-up every service shares: plain lines for a terminal, or JSON lines for journald
and log shippers (`--log-format json`): time, level, service, instrument, job id and run
number where there is one, logger, message, and the traceback of an exception."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading

# process-wide: a service runs one instrument, and the file writer one job at a time
_context: dict[str, object] = {}
_lock = threading.Lock()
CONTEXT_KEYS = ("service", "instrument", "job_id", "run_number")


def set_context(**values: object) -> None:
    """Fields every following record carries (None removes one)."""
    with _lock:
        for key, value in values.items():
            if value is None:
                _context.pop(key, None)
            else:
                _context[key] = value


def context() -> dict[str, object]:
    with _lock:
        return dict(_context)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            **context(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, not as it was at set-up: a
    stream swapped since (a test's capture, since closed) must not make a thread's later
    log line fail."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str, fmt: str = "text", service: str = "") -> None:
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    if service:
        set_context(service=service)
