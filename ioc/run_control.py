"""Run control: the ISISDAE commands as plain code over a DAE, a producer and a run-number
store. The caproto PVs only forward puts here and show what this holds."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import Producer
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver
from datastream.streams import LogStream
from datastream.topics import InstrumentTopics
from ioc.nexus_template import RunMetadata, nexus_structure
from ioc.run_numbers import RunNumberStore
from ioc.runstate import Command, CommandRefused, RunState, check
from ioc.simulated_dae import DaeCounters

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000


class Dae(Protocol):
    def begin(self, start_ns: int, paused: bool = False) -> None: ...
    def pause(self, at_ns: int) -> None: ...
    def resume(self, at_ns: int) -> None: ...
    def end(self, stop_ns: int) -> DaeCounters: ...
    def counters(self) -> DaeCounters: ...


class WriterDone(Protocol):
    def expect(self, job_id: str) -> None: ...
    def finished(self, job_id: str) -> bool | None: ...


class RunControlError(Exception):
    """A command that was allowed but failed; the message says what state it left."""


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


@dataclass
class RunSettings:
    title: str = ""
    users: str = ""
    rb_number: str = ""


@dataclass
class RunControl:
    instrument: str
    topics: InstrumentTopics
    producer: Producer
    dae: Dae
    run_numbers: RunNumberStore
    writer: WriterDone
    logs: list[LogStream]
    events_source: str = "DAE"
    # DAE counters forwarded to <INST>_runLog, written to the file's runlog group
    run_log: list[LogStream] = field(default_factory=list)
    broker: str = ""
    end_timeout_s: float = 60.0
    clock_ns: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    settings: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._state = RunState.SETUP
        self._run = RunInfo(run_number=self.run_numbers.current())
        self._ending_since: float | None = None
        self._messages: list[str] = []

    # -- what the PVs show --
    @property
    def state(self) -> RunState:
        return self._state

    @property
    def run(self) -> RunInfo:
        return self._run

    def error_message(self) -> str:
        with self._lock:
            return self._messages[-1] if self._messages else ""

    def _error(self, text: str) -> None:
        log.error(text)
        with self._lock:
            self._messages = [*self._messages[-19:], text]

    def _enter(self, command: Command) -> RunState:
        """Check and move to the command's transient state atomically; returns the old state."""
        with self._lock:
            try:
                transition = check(command, self._state)
            except CommandRefused as exc:
                self._messages = [*self._messages[-19:], str(exc)]
                log.warning("%s", exc)
                raise
            previous = self._state
            self._state = transition.passes_through
            self._messages = []  # an accepted command clears the last error
            return previous

    def _now_ms(self) -> int:
        return self.clock_ns() // NS_PER_MS

    # -- commands --
    def begin(self, paused: bool = False) -> RunInfo:
        self._enter(Command.BEGIN)
        try:
            run_number = self.run_numbers.next()
        except Exception as exc:
            self._state = RunState.SETUP
            self._error(f"BEGINRUN failed: cannot reserve a run number: {exc}")
            raise RunControlError(self.error_message()) from exc
        start_ms = self._now_ms()
        users = tuple(u.strip() for u in self.settings.users.split(",") if u.strip())
        run = RunInfo(run_number=run_number, job_id=str(uuid.uuid4()),
                      filename=f"{self.instrument}{run_number:08d}.nxs",
                      title=self.settings.title, start_ns=start_ms * NS_PER_MS,
                      users=users, rb_number=self.settings.rb_number)
        structure = nexus_structure(
            RunMetadata(self.instrument, run_number, run.title, users, run.rb_number),
            self.topics.events, self.events_source, self.logs, self.run_log)
        message = serialise_pl72(
            job_id=run.job_id, filename=run.filename, start_time=start_ms,
            run_name=f"{run_number:08d}", nexus_structure=json.dumps(structure),
            instrument_name=self.instrument, broker=self.broker,
            metadata=json.dumps({"title": run.title, "users": list(users),
                                 "rb_number": run.rb_number}),
            control_topic=self.topics.run_info)
        self.writer.expect(run.job_id)
        try:
            deliver(self.producer, self.topics.run_info, message, key=run.job_id.encode(),
                    timestamp_ms=start_ms)
        except Exception as exc:
            # nothing counted and no writer job exists: the run never started
            self._state = RunState.SETUP
            self._error(f"BEGINRUN failed: run start not sent to the file writer ({exc}); "
                        f"run number {run_number} is skipped")
            raise RunControlError(self.error_message()) from exc
        self.dae.begin(run.start_ns, paused=paused)
        self._run = run
        self._state = RunState.PAUSED if paused else RunState.RUNNING
        log.info("run %d started: %s, job %s", run_number, run.filename, run.job_id)
        return run

    def pause(self) -> None:
        self._enter(Command.PAUSE)
        self.dae.pause(self.clock_ns())
        self._state = RunState.PAUSED

    def resume(self) -> None:
        self._enter(Command.RESUME)
        self.dae.resume(self.clock_ns())
        self._state = RunState.RUNNING

    def end(self) -> None:
        self._finish(Command.END)

    def abort(self) -> None:
        self._finish(Command.ABORT)

    def _finish(self, command: Command) -> None:
        previous = self._enter(command)
        stop_ms = self._now_ms()
        try:
            counters = self.dae.end(stop_ms * NS_PER_MS)
        except Exception as exc:
            self._state = previous
            self._error(f"{command.value} failed: the DAE did not stop: {exc}")
            raise RunControlError(self.error_message()) from exc
        message = serialise_6s4t(job_id=self._run.job_id, run_name=f"{self._run.run_number:08d}",
                                 command_id=str(uuid.uuid4()), stop_time=stop_ms)
        try:
            deliver(self.producer, self.topics.run_info, message,
                    key=self._run.job_id.encode(), timestamp_ms=stop_ms)
        except Exception as exc:
            # counting has stopped; PAUSED lets the user send ENDRUN again
            self._state = RunState.PAUSED
            self._error(f"{command.value} failed: run stop not sent to the file writer ({exc});"
                        " the run is paused, try again")
            raise RunControlError(self.error_message()) from exc
        self._run.stop_ns = stop_ms * NS_PER_MS
        log.info("run %d: counting stopped at %d ms: %d events in %d frames",
                 self._run.run_number, stop_ms, counters.total_counts, counters.good_frames)
        if command is Command.ABORT:
            self._state = RunState.SETUP
            log.info("run %d aborted", self._run.run_number)
        else:
            self._ending_since = self.monotonic()
            log.info("run %d ending; waiting for the file writer", self._run.run_number)

    def tick(self) -> None:
        """Called periodically: ENDING becomes SETUP once the writer reports the file done."""
        if self._state is not RunState.ENDING or self._ending_since is None:
            return
        outcome = self.writer.finished(self._run.job_id)
        if outcome is not None:
            if outcome:
                self._error(f"file writer reported an error writing {self._run.filename}")
            self._state = RunState.SETUP
            self._ending_since = None
        elif self.monotonic() - self._ending_since > self.end_timeout_s:
            self._error(f"file writer did not confirm {self._run.filename} within "
                        f"{self.end_timeout_s:.0f}s; back to SETUP")
            self._state = RunState.SETUP
            self._ending_since = None
