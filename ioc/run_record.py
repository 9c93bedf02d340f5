"""The run as it stands, on disk before it takes effect, so a restarted IOC carries on with
the run it had: state, run number, job id, times, metadata, and a stop decided but not yet
delivered to the file writer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from datastream.durable import write_durably
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
        write_durably(self.path, json.dumps(data).encode())

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
