"""The writer's own record of the jobs it owns, on disk, so a writer that dies (SIGKILL,
power) or is stopped (SIGTERM) takes them back when it starts again.

A job is recorded (its pl72, fsynced) before its job-pool offset is committed, and removed
only after its wrdn is acknowledged by the broker. So a job taken from the pool is never
lost between the two: at worst it is resumed once more and its wrdn sent twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datastream.durable import fsync_dir, write_durably

log = logging.getLogger(__name__)


class JobJournal:
    """One file per owned job: `<dir>/<job_id>.pl72`, the run start as it came."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.pl72"

    def add(self, job_id: str, run_start: bytes) -> None:
        write_durably(self._path(job_id), run_start)

    def remove(self, job_id: str) -> None:
        self._path(job_id).unlink(missing_ok=True)
        if self.directory.is_dir():
            fsync_dir(self.directory)

    def owned(self) -> list[tuple[str, bytes]]:
        """(job_id, pl72) of every job recorded, oldest first."""
        if not self.directory.is_dir():
            return []
        entries = sorted(self.directory.glob("*.pl72"), key=lambda p: p.stat().st_mtime)
        out = []
        for path in entries:
            try:
                out.append((path.stem, path.read_bytes()))
            except OSError as exc:  # unreadable: say so, and keep going with the others
                log.error("cannot read the job record %s: %s", path, exc)
        return out
