"""A write job without a DAE run (calibration files, test files): a file name and a
nexus_structure file, started and stopped from FILEWRITER:JOB: PVs."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver
from datastream.topics import InstrumentTopics
from ioc.run_control import WriterDone
from ioc.writer_status import WriterState

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000
# a nexus_structure file larger than this is no calibration file: refused unread
MAX_STRUCTURE_BYTES = 1 << 20


class JobRefused(Exception):
    """The command cannot be carried out; the message says why (and fails the put)."""


@dataclass
class StandaloneJob:
    instrument: str
    topics: InstrumentTopics
    producer: Producer
    writer: WriterDone
    writer_state: Callable[[], WriterState]
    # the instrument's config folder (iocBoot/<INST>/): nexus_structure files are read from
    # under it only, so a put cannot make the IOC read any file it can (or block on a FIFO)
    structures_dir: Path
    clock_ns: Callable[[], int] = time.time_ns
    _job_id: str = field(default="", init=False)
    _filename: str = field(default="", init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def job_id(self) -> str:
        """The job this IOC started and the writer has not finished ("" if none)."""
        with self._lock:
            if self._job_id and self.writer.finished(self._job_id) is not None:
                self._job_id = ""
            return self._job_id

    def start(self, filename: str, structure_file: str) -> str:
        log.info("standalone job: start %r with %r", filename, structure_file)
        if self.job_id:
            raise JobRefused(f"a standalone job is already writing {self._filename}; stop it "
                             "first")
        filename = filename.strip()
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            raise JobRefused(f"file name {filename!r} is not a plain file name (files go to "
                             "the file writer's output folder)")
        structure = self._structure(structure_file.strip())
        state = self.writer_state()
        if state is WriterState.UNAVAILABLE:
            raise JobRefused("the file writer is not running (no status from it)")
        if state is WriterState.WRITING:
            raise JobRefused("the file writer is busy writing another file")
        job_id = str(uuid.uuid4())
        start_ms = self.clock_ns() // NS_PER_MS
        self.writer.expect(job_id)
        try:
            deliver(self.producer, self.topics.run_info, serialise_pl72(
                job_id=job_id, filename=filename, start_time=start_ms,
                nexus_structure=json.dumps(structure), instrument_name=self.instrument,
                control_topic=self.topics.run_info), key=job_id.encode(),
                timestamp_ms=start_ms)
        except Exception as exc:
            raise JobRefused(f"the start was not sent to the file writer: {exc}") from exc
        with self._lock:
            self._job_id, self._filename = job_id, filename
        log.info("standalone job %s: writing %s", job_id, filename)
        return job_id

    def stop(self) -> None:
        job_id = self.job_id
        if not job_id:
            raise JobRefused("no standalone job is running")
        stop_ms = self.clock_ns() // NS_PER_MS
        try:
            deliver(self.producer, self.topics.run_info, serialise_6s4t(
                job_id, stop_time=stop_ms, command_id=str(uuid.uuid4())),
                key=job_id.encode(), timestamp_ms=stop_ms)
        except Exception as exc:
            raise JobRefused(f"the stop was not sent to the file writer: {exc}") from exc
        log.info("standalone job %s: stop sent", job_id)

    def _structure(self, path_text: str) -> dict:
        if not path_text:
            raise JobRefused("no nexus_structure file given")
        folder = self.structures_dir.resolve()
        path = (folder / path_text).resolve()  # a relative name is in the folder
        if not path.is_relative_to(folder):
            raise JobRefused(f"the nexus_structure file must be in {folder} (the instrument's "
                             f"config folder), not {path_text!r}")
        try:
            if not path.is_file():  # a FIFO, a device, a folder: never opened
                raise JobRefused(f"cannot read the nexus_structure file {path}: not a file")
            with path.open("rb") as f:
                data = f.read(MAX_STRUCTURE_BYTES + 1)
            if len(data) > MAX_STRUCTURE_BYTES:
                raise JobRefused(f"{path} is over {MAX_STRUCTURE_BYTES >> 20} MiB: not a "
                                 "nexus_structure")
            structure = json.loads(data)
        except OSError as exc:
            raise JobRefused(f"cannot read the nexus_structure file {path}: "
                             f"{exc.strerror}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise JobRefused(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(structure, dict) and "nexus_structure" in structure:
            structure = structure["nexus_structure"]  # a whole kafka-to-nexus command file
        if not isinstance(structure, dict):
            raise JobRefused(f"{path}: a nexus_structure must be a JSON object")
        return structure
