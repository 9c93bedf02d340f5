"""pl72 / 6s4t -> validated job commands, with the kafka-to-nexus status codes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.run_window import ABORT_PREFIX

NS_PER_MS = 1_000_000


class CommandError(Exception):
    def __init__(self, status_code: int, message: str, job_id: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.job_id = job_id


@dataclass(frozen=True)
class StartJob:
    job_id: str
    filename: str
    start_ns: int
    stop_ns: int | None
    nexus_structure: dict[str, Any]
    control_topic: str
    run_name: str
    instrument: str
    service_id: str


@dataclass(frozen=True)
class StopJob:
    job_id: str
    command_id: str
    stop_ns: int | None  # None: stop now
    service_id: str = ""  # the writer it is addressed to, if any

    @property
    def abort(self) -> bool:
        """The run is aborted: its file is discarded, not finished."""
        return self.command_id.startswith(ABORT_PREFIX)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def parse_start(payload: bytes) -> StartJob:
    try:
        msg = deserialise_pl72(payload)
    except Exception as exc:
        raise CommandError(400, f"malformed run start (pl72): {exc}") from exc
    if not msg.job_id:
        raise CommandError(400, "run start without job_id")
    if not _is_uuid(msg.job_id):
        raise CommandError(400, f"job_id {msg.job_id!r} is not a UUID", msg.job_id)
    if not msg.filename:
        raise CommandError(400, "run start without filename", msg.job_id)
    if not msg.nexus_structure:
        raise CommandError(400, "run start without nexus_structure", msg.job_id)
    try:
        structure = json.loads(msg.nexus_structure)
    except json.JSONDecodeError as exc:
        raise CommandError(500, f"nexus_structure is not valid JSON: {exc}", msg.job_id) from exc
    if not isinstance(structure, dict):
        raise CommandError(500, "nexus_structure must be a JSON object", msg.job_id)
    return StartJob(
        job_id=msg.job_id, filename=msg.filename, start_ns=msg.start_time * NS_PER_MS,
        stop_ns=msg.stop_time * NS_PER_MS if msg.stop_time else None,
        nexus_structure=structure, control_topic=msg.control_topic, run_name=msg.run_name,
        instrument=msg.instrument_name, service_id=msg.service_id)


def parse_stop(payload: bytes) -> StopJob:
    try:
        msg = deserialise_6s4t(payload)
    except Exception as exc:
        raise CommandError(400, f"malformed run stop (6s4t): {exc}") from exc
    if not _is_uuid(msg.job_id):
        raise CommandError(400, f"job_id {msg.job_id!r} is not a UUID", msg.job_id)
    command_uuid = msg.command_id.removeprefix(ABORT_PREFIX)
    if msg.command_id and not _is_uuid(command_uuid):
        raise CommandError(400, f"command_id {msg.command_id!r} is not a UUID", msg.job_id)
    return StopJob(msg.job_id, msg.command_id,
                   msg.stop_time * NS_PER_MS if msg.stop_time else None, msg.service_id)
