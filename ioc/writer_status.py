"""What the IOC knows of the file writer, from its x5f2 / answ / wrdn messages."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from streaming_data_types.action_response_answ import ActionType, deserialise_answ
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.status_x5f2 import deserialise_x5f2

from datastream.schemas import schema_id

log = logging.getLogger(__name__)


class WriterState(IntEnum):
    UNAVAILABLE = 0
    IDLE = 1
    WRITING = 2
    FINISHED = 3
    ERROR = 4
    # the IOC has a run (or standalone job) that no writer is writing: taken by none, or its
    # writer died or stopped and has not resumed it yet
    UNOWNED = 5


@dataclass(frozen=True)
class WriterView:
    state: WriterState
    filename: str
    job_id: str
    message: str
    last_file: str
    heartbeat_age_s: float  # -1 until the first heartbeat


@dataclass
class _Writer:
    """One writer instance, as its last heartbeat described it."""

    beat: float
    job_id: str = ""
    filename: str = ""


# a job may go this long unowned before it shows: a writer takes a run start within a second
UNOWNED_GRACE_S = 3.0


class WriterStatus:
    """Folds writer messages into one view; thread-safe (a consumer thread feeds it, the IOC's
    scan reads it). Only the jobs this IOC started (expect()) make ERROR, FINISHED and
    LASTFILE; other clients' jobs show only in MESSAGE."""

    def __init__(self, heartbeat_timeout_s: float = 6.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._timeout = heartbeat_timeout_s
        self._writers: dict[str, _Writer] = {}  # service id -> last heartbeat
        self._message = ""
        self._last_file = ""
        self._last_outcome: WriterState | None = None
        self._finished: dict[str, bool] = {}  # job_id -> error encountered
        self._expected: dict[str, float] = {}  # jobs this IOC started -> when

    def expect(self, job_id: str) -> None:
        with self._lock:
            self._expected[job_id] = self._clock()

    def on_message(self, payload: bytes) -> None:
        sid = schema_id(payload)
        if sid == "x5f2":
            status = deserialise_x5f2(payload)
            info = json.loads(status.status_json or "{}")
            writing = info.get("state") == "writing"
            with self._lock:
                self._writers[status.service_id] = _Writer(
                    self._clock(), info.get("job_id", "") if writing else "",
                    info.get("file_being_written", "") if writing else "")
                if writing and info.get("job_id") in self._expected:
                    self._last_outcome = None
        elif sid == "answ":
            answ = deserialise_answ(payload)
            with self._lock:
                self._message = answ.message
                if answ.status_code >= 400 and answ.job_id in self._expected:
                    if answ.action == ActionType.SetStopTime:
                        # no writer has the job: waiting for its file would be in vain
                        self._finished.setdefault(answ.job_id, True)
                    self._last_outcome = WriterState.ERROR
        elif sid == "wrdn":
            done = deserialise_wrdn(payload)
            with self._lock:
                self._message = done.message or ("finished writing " + done.file_name)
                for writer in self._writers.values():  # its writer no longer writes it
                    if writer.job_id == done.job_id:
                        writer.job_id = writer.filename = ""
                if done.job_id not in self._expected:
                    return
                self._finished[done.job_id] = done.error_encountered
                if done.file_name:  # an aborted run's wrdn names no file: keep the last one
                    self._last_file = done.file_name
                self._last_outcome = (WriterState.ERROR if done.error_encountered
                                      else WriterState.FINISHED)

    def finished(self, job_id: str) -> bool | None:
        """None while the job is not finished, else whether it ended with an error."""
        with self._lock:
            return self._finished.get(job_id)

    def view(self, needed_job: str = "") -> WriterView:
        """`needed_job`: the job the IOC needs written now, if any."""
        with self._lock:
            now = self._clock()
            alive = {sid: w for sid, w in self._writers.items()
                     if now - w.beat <= self._timeout}
            last_beat = max((w.beat for w in self._writers.values()), default=None)
            age = -1.0 if last_beat is None else now - last_beat
            writing = [w for w in alive.values() if w.job_id]
            # the writer of the needed job first, then any other that writes
            writing.sort(key=lambda w: w.job_id != needed_job)
            current = writing[0] if writing else None
            owned = current is not None and current.job_id == needed_job
            if not alive:
                state = WriterState.UNAVAILABLE
            elif (needed_job and not owned and needed_job not in self._finished
                  and now - self._expected.get(needed_job, now) > UNOWNED_GRACE_S):
                state = WriterState.UNOWNED
            elif current is not None:
                state = WriterState.WRITING
            else:
                state = self._last_outcome or WriterState.IDLE
            return WriterView(state, current.filename if current else "",
                              current.job_id if current else "", self._message,
                              self._last_file, age)
