"""pl72 / 6s4t -> validated job commands, with the kafka-to-nexus status codes."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.run_window import ABORT_PREFIX
from filewriter.output_path import UnsafePath, check_name

NS_PER_MS = 1_000_000
# times are int64 nanoseconds everywhere after the command (numpy, HDF5, Kafka's offset
# lookup): a millisecond time past this cannot be one (it is in the year 2262)
MAX_TIME_MS = (2**63 - 1) // NS_PER_MS
# what Kafka accepts as a topic name: the answers go to the control topic, and a name the
# client refuses would fail every reply of the job
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


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
    # the pl72's metadata JSON (run control's title and TCB) and its detector-spectrum map
    # as (spectrum numbers, detector ids): ISIS's histograms are binned with them
    metadata: str = ""
    spectrum_map: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False)


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
    except (ValueError, RecursionError) as exc:
        # ValueError: not JSON, or an integer of more digits than Python converts;
        # RecursionError: nested deeper than the parser goes
        raise CommandError(500, f"nexus_structure is not valid JSON: {str(exc)[:300]}",
                           msg.job_id) from exc
    if not isinstance(structure, dict):
        raise CommandError(500, "nexus_structure must be a JSON object", msg.job_id)
    try:
        check_name(msg.filename)
    except UnsafePath as exc:  # refused before the job is journalled, so never resumed
        raise CommandError(400, f"refused: {exc}", msg.job_id) from exc
    _check_time("start_time", msg.start_time, msg.job_id)
    _check_time("stop_time", msg.stop_time, msg.job_id)
    if msg.control_topic and (not _TOPIC_NAME.fullmatch(msg.control_topic)
                              or msg.control_topic in (".", "..")):
        raise CommandError(400, f"control_topic {msg.control_topic[:300]!r} is not a Kafka "
                           "topic name", msg.job_id)
    return StartJob(
        job_id=msg.job_id, filename=msg.filename, start_ns=msg.start_time * NS_PER_MS,
        stop_ns=msg.stop_time * NS_PER_MS if msg.stop_time else None,
        nexus_structure=structure, control_topic=msg.control_topic, run_name=msg.run_name,
        instrument=msg.instrument_name, service_id=msg.service_id,
        metadata=msg.metadata or "", spectrum_map=_spectrum_map(msg.detector_spectrum_map))


def _spectrum_map(mapping: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A map whose two vectors disagree in length is no map (the writer falls back to one
    spectrum a pixel) rather than a refused run: the events are still worth writing."""
    if mapping is None:
        return None
    spectra = np.asarray(mapping.spectrum_numbers, dtype=np.int64).ravel()
    detectors = np.asarray(mapping.detector_ids, dtype=np.int64).ravel()
    if len(spectra) != len(detectors) or not len(spectra):
        return None
    return spectra, detectors


def parse_stop(payload: bytes) -> StopJob:
    try:
        msg = deserialise_6s4t(payload)
    except Exception as exc:
        raise CommandError(400, f"malformed run stop (6s4t): {exc}") from exc
    if not _is_uuid(msg.job_id):
        raise CommandError(400, f"job_id {msg.job_id!r} is not a UUID", msg.job_id)
    _check_time("stop_time", msg.stop_time, msg.job_id)
    command_uuid = msg.command_id.removeprefix(ABORT_PREFIX)
    if msg.command_id and not _is_uuid(command_uuid):
        raise CommandError(400, f"command_id {msg.command_id!r} is not a UUID", msg.job_id)
    return StopJob(msg.job_id, msg.command_id,
                   msg.stop_time * NS_PER_MS if msg.stop_time else None, msg.service_id)


def _check_time(name: str, ms: int | None, job_id: str) -> None:
    if ms is not None and not 0 <= ms <= MAX_TIME_MS:
        raise CommandError(400, f"{name} {ms} ms is out of range (0 to {MAX_TIME_MS})", job_id)
