"""The run as it stands, on disk before it takes effect, so a restarted IOC carries on with
the run it had: state, run number, job id, times, metadata, and a stop decided but not yet
delivered to the file writer."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ioc.runstate import RunState


@dataclass
class RunInfo:
    run_number: int = 0
    job_id: str = ""
    filename: str = ""
    title: str = ""
    start_ns: int = 0
    stop_ns: int = 0
    users: tuple[str, ...] = ()
    rb_number: str = ""


@dataclass(frozen=True)
class PendingStop:
    """A run stop (6s4t) decided, its time fixed, not yet acknowledged by the broker."""

    stop_ms: int
    command_id: str
    abort: bool = False


@dataclass(frozen=True)
class RunRecord:
    state: RunState
    run: RunInfo
    pending: PendingStop | None = None


class RunRecordStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, record: RunRecord) -> None:
        """Atomically, fsynced: after a crash the file holds this record or the one before."""
        data = {"state": record.state.name, "run": asdict(record.run),
                "pending": asdict(record.pending) if record.pending else None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> RunRecord | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"the run record {self.path} is unreadable: {exc}") from exc
        run = dict(data["run"])
        run["users"] = tuple(run.get("users", ()))
        pending = data.get("pending")
        return RunRecord(RunState[data["state"]], RunInfo(**run),
                         PendingStop(**pending) if pending else None)
