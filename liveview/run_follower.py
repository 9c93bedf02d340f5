"""Which run the live view shows, from the run control's commands on <INST>_runInfo: a pl72
of a DAE run (its run name is the run number, digits only) starts a new one, the 6s4t of
that job sets its stop. Pure: messages in, decisions out."""

from __future__ import annotations

import json
from dataclasses import dataclass

from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.schemas import schema_id

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class RunStarted:
    job_id: str
    run_name: str
    start_ns: int
    stop_ns: int | None
    title: str = ""


@dataclass(frozen=True)
class RunStopped:
    job_id: str
    stop_ns: int


def decide(payload: bytes, current_job: str) -> RunStarted | RunStopped | None:
    """What a runInfo message means for the live view (None: nothing). Raises on a
    malformed start or stop (the caller counts and skips it)."""
    sid = schema_id(payload)
    if sid == "pl72":
        start = deserialise_pl72(payload)
        if not start.run_name.isdigit():  # a write job, not a DAE run (a calibration file)
            return None
        return RunStarted(start.job_id, start.run_name, start.start_time * NS_PER_MS,
                          start.stop_time * NS_PER_MS if start.stop_time else None,
                          _title(start.metadata))
    if sid == "6s4t":
        stop = deserialise_6s4t(payload)
        if stop.job_id != current_job or not stop.stop_time:
            return None
        return RunStopped(stop.job_id, stop.stop_time * NS_PER_MS)
    return None


def _title(metadata: str | None) -> str:
    """The run's title from the pl72's metadata JSON (run control puts it there)."""
    try:
        title = json.loads(metadata or "{}").get("title", "")
    except (ValueError, AttributeError):
        return ""
    return title if isinstance(title, str) else ""
