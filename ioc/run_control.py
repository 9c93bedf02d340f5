"""Run control: the ISISDAE commands as plain code over a DAE, a producer and a run-number
store. The caproto PVs only forward puts here and show what this holds.

Every state change is on disk (RunRecordStore) before it takes effect. A restarted IOC
resumes the run it had: RUNNING or PAUSED with the same run number, its counters counted
back from the events topic. A stop that could not be delivered (broker down) is kept, the
state stays ENDING, and it is delivered when the broker is back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from confluent_kafka import Producer
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.geometry import Geometry
from datastream.kafka_client import DeliveryError, deliver
from datastream.logs import set_context
from datastream.run_window import ABORT_PREFIX
from datastream.streams import LogStream
from datastream.topics import InstrumentTopics
from ioc.dae import Dae, DaeCounters
from ioc.dae_settings import DaeConfig, DaeConfigStore, DaeSetup
from ioc.dae_tables import DaeTables, InstrumentDetectors, load_tables
from ioc.detector_parameters import detector_parameters
from ioc.isis_tables import TableError
from ioc.nexus_template import RunMetadata, nexus_structure
from ioc.run_numbers import RunNumberStore
from ioc.run_record import PendingStop, RunInfo, RunRecord, RunRecordStore
from ioc.runstate import Command, CommandRefused, RunState, check

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000


class WriterDone(Protocol):
    def expect(self, job_id: str) -> None: ...
    def finished(self, job_id: str) -> bool | None: ...


class RunControlError(Exception):
    """A command that was allowed but failed; the message says what state it left."""


@dataclass
class RunSettings:
    title: str = ""
    users: str = ""
    rb_number: str = ""


RETRY_STOP_S = 2.0
DELIVERY_TIMEOUT_S = 10.0
# states a restarted IOC carries on counting in, and the state it then shows
_RESUMES = {RunState.RUNNING: RunState.RUNNING, RunState.RESUMING: RunState.RUNNING,
            RunState.PAUSED: RunState.PAUSED, RunState.PAUSING: RunState.PAUSED}


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
    record_store: RunRecordStore | None = None
    # (first pixel, pixels): the DAE's one-to-one detector-spectrum map, sent in each pl72
    # for Mantid's live listener, which builds its workspace's spectra from it
    spectra: tuple[int, int] | None = None
    # where the source, sample, banks and monitors are: written into each run's file
    geometry: Geometry | None = None
    # the DAE's settings (DAESETTINGS, TCBSETTINGS, HARDWAREPERIODS, UPDATESETTINGS): the
    # DAE counts with their periods; the TCB goes in each run's pl72, and the live view bins
    # the run with it. Kept in config_store when there is one.
    dae_config: DaeConfig = field(default_factory=DaeConfig)
    # vetoes switched at run time (veto -> on), over what the settings say
    runtime_vetoes: dict[str, bool] = field(default_factory=lambda: {"fifo": True})
    config_store: DaeConfigStore | None = None
    # iocBoot/<INST>/: where the tables DAESETTINGS names are read from (ioc.dae_tables)
    tables_dir: Path | None = None

    def _spectrum_map(self) -> DetectorSpectrumMap | None:
        """The tables' map when a spectra table is set, else the geometry's one-to-one map;
        taken at BEGINRUN, so tables set later count from the next run."""
        table_map = self._tables.spectrum_map()
        if table_map is not None:
            spectra, detectors = table_map
            return DetectorSpectrumMap(spectra.astype(np.int32), detectors.astype(np.int32),
                                       len(np.unique(spectra)))
        ids = self._pixel_ids()
        if ids is None:
            return None
        return DetectorSpectrumMap(ids, ids, len(ids))

    def _pixel_ids(self) -> np.ndarray | None:
        """The geometry's pixels, else the [dae] pixels; None without either."""
        if self.geometry is not None:
            return self.geometry.pixel_ids()
        if self.spectra is not None:
            first, n = self.spectra
            return np.arange(first, first + n, dtype=np.int32)
        return None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._state = RunState.SETUP
        self._run = RunInfo(run_number=self.run_numbers.current())
        self._pending: PendingStop | None = None
        self._ending_since: float | None = None
        self._messages: list[str] = []
        self._retry: threading.Thread | None = None
        self._closed = threading.Event()
        # for the metrics (run starts and stops as dashboard annotations)
        self.runs_begun = 0
        self.runs_ended: dict[str, int] = {"end": 0, "abort": 0}
        # the tables DAESETTINGS names, as read when the settings were taken; what kept them
        # from being read at start-up ("" if nothing): BEGINRUN is refused until it is fixed
        self._tables = DaeTables()
        self._tables_error = ""
        # (the detector table it was made from, the file's detector parameters)
        self._detector_config: tuple[object, dict[str, Any] | None] | None = None

    # -- what the PVs show --
    @property
    def state(self) -> RunState:
        return self._state

    @property
    def run(self) -> RunInfo:
        return self._run

    @property
    def shown_run_number(self) -> int:
        """RUNNUMBER as ISISDAE shows it: in SETUP the number the next run will get (an
        aborted run's number again), else the run's."""
        if self._state is RunState.SETUP:
            return self.run_numbers.current() + 1
        return self._run.run_number

    @property
    def stop_pending(self) -> bool:
        """A run stop decided but not yet on the broker (it is retried)."""
        return self._pending is not None

    def active_job(self) -> str:
        """The job a file writer should be writing now ("" if none)."""
        if self._state in (RunState.SETUP, RunState.BEGINNING) or (
                self._state is RunState.ENDING and self._pending is None
                and self.writer.finished(self._run.job_id) is not None):
            return ""
        return self._run.job_id

    def error_message(self) -> str:
        with self._lock:
            return self._messages[-1] if self._messages else ""

    def messages(self) -> list[str]:
        """The recent messages, oldest first (ALLMSGS)."""
        with self._lock:
            return list(self._messages)

    def note_error(self, text: str) -> None:
        """A refusal decided outside run control (a PV's own check): ERRMSGS shows it."""
        log.warning("%s", text)
        with self._lock:
            self._messages = [*self._messages[-19:], text]

    def _error(self, text: str) -> None:
        log.error(text)
        with self._lock:
            self._messages = [*self._messages[-19:], text]

    def _set(self, state: RunState) -> None:
        """Change state, on disk first."""
        if self.record_store is not None:
            self.record_store.save(RunRecord(state, self._run, self._pending))
        self._state = state

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
        if self._tables_error:
            # a run with another map than the settings say would be a wrong file
            self._state = RunState.SETUP
            self._error(f"BEGINRUN refused: {self._tables_error}; put DAESETTINGS with "
                        "tables that can be read (or none)")
            raise RunControlError(self.error_message())
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
            self.topics.events, self.events_source, self.logs, self.run_log, self.geometry,
            monitor_spectra=self._tables.monitor_spectra(),
            detectors=self._detector_parameters())
        message = serialise_pl72(
            job_id=run.job_id, filename=run.filename, start_time=start_ms,
            run_name=f"{run_number:08d}", nexus_structure=json.dumps(structure),
            instrument_name=self.instrument, broker=self.broker,
            metadata=json.dumps({"title": run.title, "users": list(users),
                                 "rb_number": run.rb_number, "tcb": self._tcb_metadata(),
                                 "periods": self.dae.periods}),
            control_topic=self.topics.run_info, detector_spectrum_map=self._spectrum_map())
        self.writer.expect(run.job_id)
        previous_run, self._run, self._pending = self._run, run, None
        self._set(RunState.BEGINNING)
        try:
            deliver(self.producer, self.topics.run_info, message, key=run.job_id.encode(),
                    timestamp_ms=start_ms)
        except Exception as exc:
            # nothing counted and no writer job exists: the run never started
            self._run = previous_run
            self._set(RunState.SETUP)
            self._error(f"BEGINRUN failed: run start not sent to the file writer ({exc}); "
                        f"run number {run_number} is skipped")
            raise RunControlError(self.error_message()) from exc
        self._set(RunState.PAUSED if paused else RunState.RUNNING)
        self.dae.begin(run.start_ns, paused=paused)
        self.runs_begun += 1
        set_context(run_number=run_number)
        log.info("run %d started: %s, job %s", run_number, run.filename, run.job_id)
        return run

    def _detector_parameters(self) -> dict[str, Any] | None:
        """The detector table in use (else the geometry's) as the file holds it, made once
        for each table read: a large instrument's takes a moment to make."""
        table = self._tables.detector
        cached = self._detector_config
        if cached is None or cached[0] is not table:
            cached = self._detector_config = (table, detector_parameters(table, self.geometry))
        return cached[1]

    def _tcb_metadata(self) -> dict[str, object]:
        low, high, channels, logarithmic = self.dae_config.tcb.channels()
        return {"tof_min_ns": low, "tof_max_ns": high, "channels": channels,
                "logarithmic": logarithmic}

    def configure(self, config: DaeConfig, reload_tables: bool = False) -> None:
        """New DAE settings, in SETUP only (as ISISDAE): the tables they name are read (or
        refused: TableError says why), the DAE takes the periods (or refuses them: ValueError
        says why), then they are on disk, then they hold. The tables are read again when
        their names change or `reload_tables` (a DAESETTINGS put: as the ICP, applying the
        settings reloads them)."""
        self._refuse_settings_unless_setup()
        tables = self._tables
        if reload_tables or self._tables_error or _table_names(config.setup) != _table_names(
                self.dae_config.setup):
            # outside the lock: a large table takes seconds, and BEGINRUN need not wait
            tables = self._read_tables(config.setup)
        with self._lock:
            # a BEGINRUN taken while the tables were read has the settings it began with
            self._refuse_settings_unless_setup()
            self.dae.set_periods(config.periods.plan())
            if self.config_store is not None:
                self.config_store.save(config)
            self.dae_config = config
            self._tables, self._tables_error = tables, ""
            # the settings say which vetoes are on now; only FIFO's runtime switch outlives
            # them
            self.runtime_vetoes = {v: on for v, on in self.runtime_vetoes.items()
                                   if v == "fifo"}
            self.dae.set_vetoes(self.enabled_vetoes())

    def _refuse_settings_unless_setup(self) -> None:
        if self._state is not RunState.SETUP:
            raise CommandRefused(f"settings refused: run state is {self._state.name}, must be "
                                 "SETUP")

    def load_config(self) -> None:
        """The settings kept on disk, over the ones given at start-up; the DAE takes their
        periods. Call once, before the PVs are served."""
        if self.config_store is not None:
            self.dae_config = self.config_store.load(self.dae_config)
        try:
            self._tables = self._read_tables(self.dae_config.setup)
        except TableError as exc:
            # the settings stay as they were put; runs wait for tables that can be read
            self._tables_error = str(exc)
            self._error(f"the DAE settings' tables cannot be read: {exc}")
        self.dae.set_periods(self.dae_config.periods.plan())
        self.dae.set_vetoes(self.enabled_vetoes())

    def _read_tables(self, setup: DaeSetup) -> DaeTables:
        return load_tables(_table_names(setup), self.tables_dir, self._detectors())

    def _detectors(self) -> InstrumentDetectors | None:
        """The detector numbers the tables may name: the geometry's pixels and monitors, else
        the [dae] pixels."""
        ids = self._pixel_ids()
        if ids is None:
            return None
        monitors = tuple(m.id for m in self.geometry.monitors) if self.geometry else ()
        return InstrumentDetectors(ids.astype(np.int64), monitors)

    # -- vetoes: DAESETTINGS switches them; VETO:ENABLE:SP/DISABLE:SP at any time, as
    # ISISDAE's setVeto (the FIFO veto, on unless switched off, is switched only so) --
    def enabled_vetoes(self) -> frozenset[str]:
        enabled = set(self.dae_config.setup.enabled_vetoes())
        for veto, on in self.runtime_vetoes.items():
            if on:
                enabled.add(veto)
            else:
                enabled.discard(veto)
        return frozenset(enabled)

    def set_veto(self, veto: str, on: bool) -> None:
        self.runtime_vetoes[veto] = on
        self.dae.set_vetoes(self.enabled_vetoes())
        log.info("veto %s %s", veto, "enabled" if on else "disabled")

    def pause(self) -> None:
        self._enter(Command.PAUSE)
        self._set(RunState.PAUSED)
        self.dae.pause(self.clock_ns())

    def resume(self) -> None:
        self._enter(Command.RESUME)
        self._set(RunState.RUNNING)
        self.dae.resume(self.clock_ns())

    def end(self) -> None:
        self._finish(Command.END)

    def abort(self) -> None:
        self._finish(Command.ABORT)

    def _finish(self, command: Command) -> None:
        previous = self._enter(command)
        self.runs_ended["abort" if command is Command.ABORT else "end"] += 1
        # the next millisecond: every frame the DAE already made (its time <= now, and frame
        # times need not be whole milliseconds) lies before the stop, in the run
        stop_ms = self._now_ms() + 1
        try:
            counters = self.dae.end(stop_ms * NS_PER_MS)
        except Exception as exc:
            self._state = previous
            self._error(f"{command.value} failed: the DAE did not stop: {exc}")
            raise RunControlError(self.error_message()) from exc
        # counting has stopped: that time is the run's end, whenever the stop gets through
        self._run.stop_ns = stop_ms * NS_PER_MS
        abort = command is Command.ABORT
        self._pending = PendingStop(stop_ms, (ABORT_PREFIX if abort else "") + str(uuid.uuid4()),
                                    abort)
        self._set(self._state)
        log.info("run %d: counting stopped at %d ms: %d events in %d frames",
                 self._run.run_number, stop_ms, counters.total_counts, counters.good_frames)
        if not self._deliver_stop():
            self._retry_stop_in_background()

    def _deliver_stop(self) -> bool:
        """Deliver the DAE's last frames, then the pending stop; True once both are on the
        broker. On failure the state stays ENDING (ABORTING) and ERRMSGS says why."""
        pending = self._pending
        assert pending is not None
        run = self._run
        try:
            remaining = self.dae.flush(DELIVERY_TIMEOUT_S)
            if remaining:
                raise DeliveryError(f"{remaining} event frames not yet delivered")
            deliver(self.producer, self.topics.run_info, serialise_6s4t(
                job_id=run.job_id, run_name=f"{run.run_number:08d}",
                command_id=pending.command_id, stop_time=pending.stop_ms),
                key=run.job_id.encode(), timestamp_ms=pending.stop_ms,
                timeout=DELIVERY_TIMEOUT_S)
        except Exception as exc:
            self._error(f"run {run.run_number}: counting stopped at {_iso_ms(pending.stop_ms)} "
                        f"but the run stop is not delivered yet ({exc}); it is sent when "
                        f"the broker is back, and the run stays "
                        f"{self._state.name} until then")
            return False
        self._pending = None
        if pending.abort:
            # as ISISDAE: an aborted run's data are discarded (the writer deletes its file)
            # and its number is the next run's
            self.run_numbers.release(run.run_number)
            self._set(RunState.SETUP)
            log.info("run %d aborted: its file is discarded and its number reused",
                     run.run_number)
        else:
            self._ending_since = self.monotonic()
            self._set(RunState.ENDING)
            log.info("run %d ending; waiting for the file writer", run.run_number)
        return True

    def _retry_stop_in_background(self) -> None:
        if self._retry is not None and self._retry.is_alive():
            return

        def retry() -> None:
            while not self._closed.wait(RETRY_STOP_S):
                if self._pending is None or self._deliver_stop():
                    with self._lock:
                        self._messages = [*self._messages[-19:],
                                          f"run {self._run.run_number}: the run stop was "
                                          "delivered after the broker came back"]
                    return

        self._retry = threading.Thread(target=retry, name="deliver-run-stop", daemon=True)
        self._retry.start()

    def close(self) -> None:
        self._closed.set()
        if self._retry is not None:
            self._retry.join(DELIVERY_TIMEOUT_S + RETRY_STOP_S)

    def tick(self) -> None:
        """Called periodically: ENDING becomes SETUP once the writer reports the file done."""
        if self._state is not RunState.ENDING or self._ending_since is None:
            return
        outcome = self.writer.finished(self._run.job_id)
        if outcome is not None:
            if outcome:
                self._error(f"file writer reported an error writing {self._run.filename}")
            self._ending_since = None
            self._set(RunState.SETUP)
        elif self.monotonic() - self._ending_since > self.end_timeout_s:
            self._error(f"file writer did not confirm {self._run.filename} within "
                        f"{self.end_timeout_s:.0f}s; back to SETUP")
            self._ending_since = None
            self._set(RunState.SETUP)

    # -- after a restart --
    def restore(self, count_events: Callable[[RunInfo], DaeCounters]) -> None:
        """Carry on with the run on disk. `count_events(run)` gives the counters of what
        the DAE delivered for it. Call once, before the PVs are served."""
        record = self.record_store.load() if self.record_store else None
        if record is None:
            return
        self._run, self._pending = record.run, record.pending
        self.writer.expect(record.run.job_id)
        run = self._run
        if record.state is RunState.SETUP:
            return
        if record.state is RunState.BEGINNING:
            # the run start may or may not have reached the writer; nothing was counted
            self._run.stop_ns = run.start_ns
            self._pending = PendingStop(run.start_ns // NS_PER_MS, str(uuid.uuid4()), True)
            self._state = RunState.ABORTING
            self._error(f"run {run.run_number} was being started when the IOC stopped; it is "
                        "aborted with no counts")
        elif record.state in _RESUMES:
            counted = count_events(run)
            self.dae.restore(counted)
            self._state = _RESUMES[record.state]
            if self._state is RunState.RUNNING:
                self.dae.resume(self.clock_ns())
            self._set(self._state)
            self._error(f"run {run.run_number} resumed after an IOC restart, "
                        f"{self._state.name}, with {counted.total_counts} events in "
                        f"{counted.good_frames} good frames; no frames were counted while "
                        "the IOC was down")
            return
        else:  # ENDING or ABORTING: counting had stopped
            self.dae.restore(count_events(run))
            self._state = record.state
            if self._pending is None:  # the stop was delivered: wait for the file
                self._ending_since = self.monotonic()
                return
        if not self._deliver_stop():
            self._retry_stop_in_background()


def _table_names(setup: DaeSetup) -> dict[str, str]:
    return {"wiring": setup.wiring_table, "detector": setup.detector_table,
            "spectra": setup.spectra_table}


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
