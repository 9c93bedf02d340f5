"""What the IOC knows of the file writer, from its x5f2 / answ / wrdn messages."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from streaming_data_types.action_response_answ import deserialise_answ
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


@dataclass(frozen=True)
class WriterView:
    state: WriterState
    filename: str
    job_id: str
    message: str
    last_file: str
    heartbeat_age_s: float  # -1 until the first heartbeat


class WriterStatus:
    """Folds writer messages into one view; thread-safe (a consumer thread feeds it, the IOC's
    scan reads it)."""

    def __init__(self, heartbeat_timeout_s: float = 6.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._timeout = heartbeat_timeout_s
        self._last_beat: float | None = None
        self._writing = False
        self._filename = ""
        self._job_id = ""
        self._message = ""
        self._last_file = ""
        self._last_outcome: WriterState | None = None
        self._finished: dict[str, bool] = {}  # job_id -> error encountered
        self._expected: set[str] = set()  # jobs this IOC started

    def expect(self, job_id: str) -> None:
        """A refusal (answ >= 400) means ERROR only for the jobs the IOC itself started; others'
        bad commands are only shown as the message."""
        with self._lock:
            self._expected.add(job_id)

    def on_message(self, payload: bytes) -> None:
        sid = schema_id(payload)
        if sid == "x5f2":
            status = deserialise_x5f2(payload)
            info = json.loads(status.status_json or "{}")
            with self._lock:
                self._last_beat = self._clock()
                was_writing = self._writing
                self._writing = info.get("state") == "writing"
                if self._writing:
                    self._filename = info.get("file_being_written", "")
                    self._job_id = info.get("job_id", "")
                    if not was_writing:
                        self._last_outcome = None
        elif sid == "answ":
            answ = deserialise_answ(payload)
            with self._lock:
                self._message = answ.message
                if answ.status_code >= 400 and answ.job_id in self._expected:
                    self._last_outcome = WriterState.ERROR
        elif sid == "wrdn":
            done = deserialise_wrdn(payload)
            with self._lock:
                self._finished[done.job_id] = done.error_encountered
                self._last_file = done.file_name
                self._writing = False
                self._last_outcome = (WriterState.ERROR if done.error_encountered
                                      else WriterState.FINISHED)
                self._message = done.message or ("finished writing " + done.file_name)

    def finished(self, job_id: str) -> bool | None:
        """None while the job is not finished, else whether it ended with an error."""
        with self._lock:
            return self._finished.get(job_id)

    def view(self) -> WriterView:
        with self._lock:
            age = -1.0 if self._last_beat is None else self._clock() - self._last_beat
            if self._last_beat is None or age > self._timeout:
                state = WriterState.UNAVAILABLE
            elif self._writing:
                state = WriterState.WRITING
            else:
                state = self._last_outcome or WriterState.IDLE
            return WriterView(state, self._filename if self._writing else "", self._job_id,
                              self._message, self._last_file, age)
