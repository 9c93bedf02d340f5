"""`datastream filewriter`: take run starts from the job pool, follow the control topic for
the stop, answer (answ), report finished files (wrdn) and heartbeat (x5f2)."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from streaming_data_types.action_response_answ import (
    ActionOutcome,
    ActionType,
    deserialise_answ,
    serialise_answ,
)
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn, serialise_wrdn
from streaming_data_types.status_x5f2 import serialise_x5f2

import datastream
from datastream.binning import warm_up
from datastream.kafka_client import KafkaSettings, make_consumer, make_producer, offsets_since
from datastream.logs import set_context
from datastream.metrics import Health, serve_metrics
from datastream.schemas import MalformedMessage, schema_id
from filewriter.commands import CommandError, StartJob, StopJob, parse_start, parse_stop
from filewriter.job import JobResult, JobSettings, JobStartError, WriteJob, data_consumer
from filewriter.journal import JobJournal
from filewriter.metrics import collect
from filewriter.warm_consumer import WarmConsumer

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 2.0
# the control topic's poll while a job runs: how soon a finished job's wrdn goes out
JOB_POLL_S = 0.02
KNOWN_JOBS = 10_000  # job ids remembered (this writer's and those other writers took)
# a topic's leader may take a moment to be elected after it is made: the look-back is asked
# again for this long (not longer: the writer is not ready until it is done)
POOL_LOOKBACK_RETRY_S = 5.0
# a pool group with no committed offset yet (its first writer ever) starts this far back, so
# a run started just before the writer joined is still taken
POOL_LOOKBACK_S = 300
# at SIGTERM, a job whose stop is known gets this long to finish before it is handed on
FINISH_ON_TERM_S = 20.0


@dataclass(frozen=True)
class ServiceSettings:
    job_pool_topic: str
    status_topic: str
    group_id: str
    job: JobSettings
    service_id: str = ""
    instance_id: str = ""  # unique per writer instance in the pool (kept across restarts)
    # every answ, wrdn and x5f2 to status_topic, not to the job's control topic: where the
    # writer may not write the topic that holds the run starts (Kafka ACLs)
    reports_to_status_topic: bool = False


class _RunningJob:
    def __init__(self, job: WriteJob, run_start: bytes) -> None:
        self.job = job
        self.run_start = run_start  # the pl72 as it came: read again, it is no second start
        self.result: JobResult | None = None
        self.thread = threading.Thread(target=self._run, name=f"job-{job.command.job_id[:8]}",
                                       daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.job.run()
        except Exception as exc:  # run() reports its failures; this is for its own bugs
            log.exception("job %s ended with an unexpected error", self.job.command.job_id)
            self.result = JobResult(self.job.command.filename,
                                    error=f"the writer failed: {type(exc).__name__}: {exc}")


class FileWriterService:
    def __init__(self, settings: ServiceSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self._kafka = kafka
        self._service_id = settings.service_id or (
            f"filewriter-{socket.gethostname()}-{os.getpid()}")
        self._producer: Producer = make_producer(kafka)
        self._pool: Consumer = make_consumer(kafka, group_id=settings.group_id,
                                             enable_auto_commit=False,
                                             auto_offset_reset="latest",
                                             # static membership: a restarted writer takes
                                             # its place in the pool at once instead of
                                             # waiting for the dead member to time out
                                             group_instance_id=settings.instance_id,
                                             session_timeout_ms=10_000,
                                             heartbeat_interval_ms=2_000)
        self._control: Consumer | None = None
        # each job's two consumers, connected ahead of time (a run's file does not wait for
        # their connections: filewriter.warm_consumer)
        self._warm_control = WarmConsumer(lambda: make_consumer(kafka), "control")
        self._warm_data = WarmConsumer(
            lambda: data_consumer(kafka, settings.job.max_queued_mb), "data")
        self.journal = JobJournal(settings.job.output_dir / ".filewriter-jobs"
                                  / (settings.instance_id or self._service_id))
        self._pool_message: Message | None = None  # the pool message being handled
        self._started_by: tuple[str, int] = ("", -1)  # topic and offset of the running pl72
        # (topic, partition, offset) of messages the control consumer acted on: the pool,
        # rejoined after a job, reads them again and must not answer them twice
        self._handled: set[tuple[str, int, int]] = set()
        self._running: _RunningJob | None = None
        self._in_pool = False
        self._ready = threading.Event()
        self._last_status = 0.0
        self.malformed_commands = 0
        # jobs that exist (running or done, here or at another writer): a stop for any other
        # job is answered 400, a second start of one of them too
        self._known_jobs: collections.OrderedDict[str, None] = collections.OrderedDict()
        # for the metrics: finished jobs by outcome, and what they wrote
        self.jobs_finished: collections.Counter[str] = collections.Counter()
        self.events_finished = 0
        self.bytes_finished = 0
        self.health = Health(STATUS_INTERVAL_S, kafka,
                             {settings.job_pool_topic, settings.status_topic})

    def _know(self, job_id: str) -> None:
        self._known_jobs[job_id] = None
        self._known_jobs.move_to_end(job_id)
        while len(self._known_jobs) > KNOWN_JOBS:
            self._known_jobs.popitem(last=False)

    # -- replies --
    def _send(self, topic: str, payload: bytes) -> bool:
        """False if the report could not even be queued: a reply that fails must not take
        the writer (and the job it runs) down with it."""
        try:
            try:
                self._producer.produce(topic, payload, timestamp=time.time_ns() // 1_000_000)
            except BufferError:
                self._producer.poll(1)
                self._producer.produce(topic, payload, timestamp=time.time_ns() // 1_000_000)
        except (KafkaException, BufferError, ValueError, TypeError) as exc:
            log.error("cannot send a report to %s: %s", topic, exc)
            return False
        self._producer.poll(0)
        return True

    def _reply_topic(self, topic: str) -> str:
        return self.settings.status_topic if self.settings.reports_to_status_topic else topic

    def _answer(self, topic: str, job_id: str, command_id: str, action: ActionType,
                ok: bool, code: int, message: str, stop_ns: int | None = None) -> None:
        stop = dt.datetime.fromtimestamp((stop_ns or 0) / 1e9, dt.UTC)
        self._send(self._reply_topic(topic), serialise_answ(
            self._service_id, job_id, command_id, action,
            ActionOutcome.Success if ok else ActionOutcome.Failure, message, code, stop))
        (log.info if ok else log.error)("answ %d for job %s: %s", code, job_id, message)

    def _status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._ready.is_set() or (not force and now - self._last_status < STATUS_INTERVAL_S):
            return
        self._last_status = now
        status: dict[str, object] = {"state": "idle"}
        if self._running is not None:
            cmd = self._running.job.command
            stop_ns = self._running.job.stop_ns
            status = {"state": "writing", "job_id": cmd.job_id,
                      "file_being_written": cmd.filename,
                      "start_time": cmd.start_ns // 1_000_000,
                      "stop_time": (stop_ns or 0) // 1_000_000}
        self._send(self.settings.status_topic, serialise_x5f2(
            "datastream-filewriter", datastream.__version__, self._service_id,
            socket.gethostname(), os.getpid(), int(STATUS_INTERVAL_S * 1000),
            json.dumps(status)))
        self.health.status_sent()

    # -- commands --
    def _on_pool_message(self, payload: bytes, topic: str, offset: int) -> None:
        sid = schema_id(payload)
        if sid in ("answ", "wrdn"):
            self._note_other_writer(sid, payload)
            return
        if sid == "6s4t":
            # the pool holds the stops too: one for a job no writer took is a bad command
            try:
                stop = parse_stop(payload)
            except CommandError as exc:
                self._answer(topic, exc.job_id, "", ActionType.SetStopTime, False,
                             exc.status_code, str(exc))
                return
            if stop.job_id not in self._known_jobs:
                self._answer(topic, stop.job_id, stop.command_id, ActionType.SetStopTime, False,
                             400, f"stop for an unknown job {stop.job_id}: no writer took it")
            return
        if sid != "pl72":
            return
        try:
            command = parse_start(payload)
        except CommandError as exc:
            self._answer(self.settings.status_topic, exc.job_id, "", ActionType.StartJob, False,
                         exc.status_code, str(exc))
            return
        if command.job_id in self._known_jobs:
            self._answer(command.control_topic or self.settings.status_topic, command.job_id,
                         "", ActionType.StartJob, False, 400,
                         f"job {command.job_id} was already started")
            return
        self._start(command, payload, (topic, offset))

    def _note_other_writer(self, sid: str, payload: bytes) -> None:
        if sid == "wrdn":
            self._know(deserialise_wrdn(payload).job_id)
            return
        answer = deserialise_answ(payload)
        if (answer.action == ActionType.StartJob and answer.outcome == ActionOutcome.Success):
            self._know(answer.job_id)

    def _commit_pool(self) -> None:
        """Commit the pool message being handled (once): it is done with, or owned."""
        msg, self._pool_message = self._pool_message, None
        if msg is not None:
            self._pool.commit(message=msg, asynchronous=False)

    def _start(self, command: StartJob, run_start: bytes, where: tuple[str, int] | None,
               resume: bool = False) -> None:
        """Open the job's file and start writing it; a job that cannot be opened is answered
        400 or 500 with the reason and forgotten (out of the journal, no file left), and the
        writer goes on with the next command: one bad run start must not stop the writer, nor
        (journalled) stop it again at every start."""
        control_topic = command.control_topic or self.settings.status_topic
        set_context(job_id=command.job_id)
        try:
            self._open_and_run(command, run_start, where, resume, control_topic)
        except JobStartError as exc:
            self._refuse(command, control_topic, exc.status_code, str(exc), resume)
        except Exception as exc:  # the writer's own failure, for this job only
            log.exception("job %s: starting it failed", command.job_id)
            self._refuse(command, control_topic, 500,
                         f"the writer could not start the job: {type(exc).__name__}: {exc}",
                         resume)

    def _refuse(self, command: StartJob, control_topic: str, code: int, reason: str,
                resume: bool) -> None:
        with contextlib.suppress(OSError):  # unrecorded or not, the job is answered
            self.journal.remove(command.job_id)
        if resume:
            reason = f"{reason} (resuming it after a writer restart)"
        self._answer(control_topic, command.job_id, "", ActionType.StartJob, False, code,
                     reason[:1000])
        set_context(job_id=None)

    def _open_and_run(self, command: StartJob, run_start: bytes, where: tuple[str, int] | None,
                      resume: bool, control_topic: str) -> None:
        # owned before the pool moves past it: a writer that dies from here on takes the job
        # back from its journal when it starts again
        if not resume:
            try:
                self.journal.add(command.job_id, run_start)
            except OSError as exc:
                raise JobStartError(500, f"cannot record the job: {exc}") from exc
            finally:
                # taken either way: a journal that cannot be written refuses this job, and
                # must not make the writer read it again
                self._commit_pool()
        job = WriteJob(command, self.settings.job, self._kafka, resume=resume,
                       consumer=self._warm_data.take)
        warnings = job.open()
        try:
            # before the 201: a job whose stop cannot be followed is refused, not left
            self._follow_control(control_topic, command.start_ns // 1_000_000)
        except Exception as exc:
            job.cancel()
            if self._control is not None:
                with contextlib.suppress(Exception):
                    self._control.close()
                self._control = None
            raise JobStartError(500, f"cannot follow the control topic {control_topic}: "
                                f"{exc}") from exc
        self._know(command.job_id)
        what = "resuming" if resume else "writing"
        self._answer(control_topic, command.job_id, "", ActionType.StartJob, True, 201,
                     f"{what} {command.filename}"
                     + (" from the run's start after a writer restart" if resume else "")
                     + (f" ({'; '.join(warnings)})" if warnings else ""))
        self._running = _RunningJob(job, run_start)
        self._started_by = where or ("", -1)
        # leave the pool while busy, so another writer instance takes the next run
        if self._in_pool:
            self._pool.unsubscribe()
            self._in_pool = False
        self._ready.clear()
        self._running.thread.start()
        self._ready.set()
        self._status(force=True)

    def _follow_control(self, topic: str, since_ms: int) -> None:
        """Read the control topic from the run's start. A topic made a moment ago may have no
        leader yet: asked again for a while, as the pool's look-back is."""
        self._control = self._warm_control.take()
        deadline = time.monotonic() + POOL_LOOKBACK_RETRY_S
        while True:
            try:
                metadata = self._control.list_topics(topic, timeout=10).topics.get(topic)
                partitions = [TopicPartition(topic, p, since_ms)
                              for p in (metadata.partitions if metadata else [0])]
                self._control.assign(offsets_since(self._control, partitions))
                return
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise
                log.debug("control topic %s (asking again): %s", topic, exc)
                time.sleep(0.5)

    def _on_control_message(self, payload: bytes, topic: str, offset: int) -> bool:
        """True if the message was acted on (answered) here."""
        sid = schema_id(payload)
        running = self._running
        if running is None:
            return False
        job_id = running.job.command.job_id
        if sid == "pl72":
            if topic == self._started_by[0] and offset <= self._started_by[1]:
                return False  # the start of this job, or older (read again from its start)
            if payload == running.run_start:
                return False  # the start of a resumed job, read again
            try:
                again = parse_start(payload)
            except CommandError:
                return False  # the pool member answers bad starts
            if again.job_id != job_id:
                return False  # a job for the pool
            self._answer(topic, job_id, "", ActionType.StartJob, False, 400,
                         f"job {job_id} is already running")
            return True
        if sid != "6s4t":
            return False
        try:
            stop = parse_stop(payload)
        except CommandError:
            return False  # the pool member answers bad stops
        if stop.job_id == job_id:
            self._stop(running, stop, topic)
            return True
        if stop.service_id == self._service_id:
            self._answer(topic, stop.job_id, stop.command_id, ActionType.SetStopTime, False,
                         400, f"stop for an unknown job {stop.job_id}: this writer runs "
                         f"{job_id}")
            return True
        return False  # another writer's job, or one for the pool to judge

    def _stop(self, running: _RunningJob, stop: StopJob, topic: str) -> None:
        stop_ns = stop.stop_ns if stop.stop_ns is not None else time.time_ns()
        running.job.request_stop(stop_ns)
        if stop.abort:
            # nothing of an aborted run is kept: no point reading on to its stop time
            running.job.discard()
            self._answer(topic, stop.job_id, stop.command_id, ActionType.SetStopTime, True,
                         201, f"run aborted: discarding {running.job.command.filename}",
                         stop_ns)
            return
        self._answer(topic, stop.job_id, stop.command_id or str(uuid.uuid4()),
                     ActionType.SetStopTime, True, 201,
                     f"stop time set for {running.job.command.filename}", stop_ns)

    def _finish(self) -> None:
        running = self._running
        assert running is not None and running.result is not None
        result = running.result
        cmd = running.job.command
        if running.job.discarded:
            # checked before `abandoned`: a writer stopping while it discards still discards
            self._finish_discarded(running)
            return
        self.events_finished += result.events
        self.bytes_finished += running.job.bytes_read
        self.jobs_finished["handed_on" if result.abandoned
                           else "failed" if result.error else "succeeded"] += 1
        if result.abandoned:
            # the writer is stopping: no wrdn, the job stays in the journal and is resumed
            log.warning("handed on %s: it is written again from the run's start when this "
                        "writer starts again", cmd.filename)
            self._running = None
            return
        noted = {kind: n for kind, n in result.counts.items() if n}
        message = (f"{result.events} events"
                   + (f", {result.malformed} malformed messages skipped"
                      if result.malformed else "")
                   + "".join(f", {n} {kind.replace('_', ' ')}" for kind, n in noted.items()))
        if result.error:
            message = f"{result.error} ({message})"
        self._report_done(cmd, result.error is not None, cmd.filename,
                          {"events": result.events, "malformed": result.malformed, **noted},
                          message)
        log.info("finished %s: %s", cmd.filename, message)
        self._done_with_job()

    def _finish_discarded(self, running: _RunningJob) -> None:
        """The run was aborted: delete its file (and an earlier attempt's `.partial`), then
        report it done, so the job leaves the journal and the same file name (ISIS reuses the
        run number) is free for the next run start."""
        cmd = running.job.command
        result = running.result
        assert result is not None
        # read, but its events are in no file: not counted as written
        self.bytes_finished += running.job.bytes_read
        if result.error:  # e.g. disk full before the abort: moot, the file goes anyway
            log.warning("aborted job %s had failed before: %s", cmd.job_id, result.error)
        try:
            deleted = running.job.discard_files()
        except OSError as exc:
            # the file stays, so the wrdn names it, as an error; the job is forgotten all the
            # same: resumed, it would only read the abort again and fail again, in a loop
            self.jobs_finished["failed"] += 1
            message = f"run aborted, but its file could not be deleted: {exc}"
            log.error("%s: %s", cmd.filename, message)
            self._report_done(cmd, True, cmd.filename, {"aborted": True}, message)
            self._done_with_job()
            return
        self.jobs_finished["discarded"] += 1
        message = f"run aborted: {cmd.filename} discarded, no file written"
        # file_name "": no file was written, and a reader taking the last file from every
        # wrdn (the IOC's FILEWRITER:LASTFILE) must not name a file that is not there
        self._report_done(cmd, False, "",
                          {"aborted": True, "discarded_file": cmd.filename,
                           "events": result.events}, message)
        log.info("%s (deleted %s)", message, ", ".join(deleted) or "nothing")
        self._done_with_job()

    def _report_done(self, cmd: StartJob, error: bool, file_name: str,
                     metadata: dict[str, object], message: str) -> None:
        """Send the job's wrdn, and forget the job once the broker has it."""
        self._send(self._reply_topic(cmd.control_topic or self.settings.status_topic),
                   serialise_wrdn(self._service_id, cmd.job_id, error, file_name,
                                  json.dumps(metadata), message))
        if self._producer.flush(10) == 0:
            # the wrdn is on the broker: only now is the job no longer this writer's
            self.journal.remove(cmd.job_id)
        else:
            log.error("the wrdn of %s is not acknowledged; the job stays in the journal",
                      cmd.filename)

    def _done_with_job(self) -> None:
        """The job is over here: follow the next one, or the pool."""
        set_context(job_id=None)
        self._running = None
        if self._control is not None:
            self._control.close()
            self._control = None
        self._next_job()
        self._status(force=True)

    def _next_job(self) -> None:
        """Resume the next job this writer owns, if any; else (re)join the pool. A record
        that cannot be resumed is dropped (and answered): kept, it would fail again at every
        start."""
        for job_id, run_start in self.journal.owned():
            if self._running is not None:
                return
            try:
                self._resume(job_id, run_start)
            except Exception:
                log.exception("dropping the job record %s: resuming it failed", job_id)
                with contextlib.suppress(OSError):
                    self.journal.remove(job_id)
            if self._running is not None:
                return
        self._subscribe_pool()

    def _resume(self, job_id: str, run_start: bytes) -> None:
        try:
            command = parse_start(run_start)
        except CommandError as exc:
            log.error("dropping the unreadable job record %s: %s", job_id, exc)
            self.journal.remove(job_id)
            return
        if command.job_id != job_id:
            # _start forgets command.job_id: this record would stay, and come back
            log.error("dropping the job record %s: it holds job %s", job_id, command.job_id)
            self.journal.remove(job_id)
            return
        log.warning("resuming job %s (%s), left unfinished when this writer last stopped",
                    job_id, command.filename)
        self._start(command, run_start, None, resume=True)

    def _subscribe_pool(self) -> None:
        self._ready.clear()
        self._in_pool = True
        self._pool.subscribe([self.settings.job_pool_topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A group that never committed starts POOL_LOOKBACK_S back, not at the end: a run
        start sent before its first writer joined is then still taken. A topic made a moment
        ago may have no leader yet: asked again for a while before giving up."""
        deadline = time.monotonic() + POOL_LOOKBACK_RETRY_S
        while True:
            try:
                self._look_back(consumer, partitions)
                break
            except Exception as exc:
                if time.monotonic() < deadline:
                    log.debug("job pool look-back (asking again): %s", exc)
                    time.sleep(0.5)
                    continue
                # the pool still works, from librdkafka's reset point (the newest offset)
                log.warning("job pool: could not look back for earlier run starts: %s", exc)
                break
        self._ready.set()

    def _look_back(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=5)
        fresh = [tp for tp in committed if tp.offset < 0]
        if not fresh:
            return
        since = time.time_ns() // 1_000_000 - POOL_LOOKBACK_S * 1000
        found = offsets_since(  # nothing since: the end, as it is now
            consumer, [TopicPartition(tp.topic, tp.partition, since) for tp in fresh], timeout=5)
        starts = {(tp.topic, tp.partition): tp.offset for tp in found}
        for tp in partitions:
            tp.offset = starts.get((tp.topic, tp.partition), tp.offset)
        consumer.assign(partitions)
        log.info("job pool has no committed offset yet: reading from %d s back",
                 POOL_LOOKBACK_S)

    # -- main loop --
    def run(self, stop: threading.Event) -> None:
        log.info("file writer %s: job pool %s, files in %s", self._service_id,
                 self.settings.job_pool_topic, self.settings.job.output_dir)
        self._next_job()
        self._warm_control.refill()
        self._warm_data.refill()
        try:
            while not stop.is_set():
                self._step()
        finally:
            if self._running is not None:
                self._hand_on()
            self._warm_control.close()
            self._warm_data.close()
            self._pool.close()
            self._producer.flush(10)

    def _hand_on(self) -> None:
        """Stopping with a job: finish it if its stop is known and it ends soon; otherwise
        close the file as it is and keep the job, to be written again from the run's start
        when the writer next starts. Never a wrdn that calls an unfinished file a success."""
        running = self._running
        assert running is not None
        if running.job.stop_ns is not None:
            running.thread.join(FINISH_ON_TERM_S)
        if running.thread.is_alive():
            log.warning("stopping: handing on %s (closing it as it is)",
                        running.job.command.filename)
            running.job.abandon()
            running.thread.join(60)
        if running.result is not None:
            self._finish_guarded()

    @property
    def running_job(self) -> WriteJob | None:
        running = self._running
        return running.job if running is not None else None

    def _step(self) -> None:
        self.health.tick()
        if self._running is None:
            msg = self._pool.poll(0.2)
            if msg is not None and not msg.error():
                self._pool_message = msg
                key = (msg.topic(), msg.partition(), msg.offset())
                if key in self._handled:
                    self._handled.discard(key)
                else:
                    self._guard(self._on_pool_message, msg)
                self._commit_pool()
        else:
            assert self._control is not None
            # short: the job's end is seen only between polls, and its wrdn waited up to
            # the whole timeout (0.1 s on average at 0.2 s; a run of 100 M events takes 1.3)
            msg = self._control.poll(JOB_POLL_S)
            if (msg is not None and not msg.error()
                    and self._guard(self._on_control_message, msg)):
                self._handled.add((msg.topic(), msg.partition(), msg.offset()))
            if not self._running.thread.is_alive():
                self._finish_guarded()
        self._status()

    def _finish_guarded(self) -> None:
        """_finish, which must not fail: if it does (a bug), the job is still let go of, or
        every later poll would find the same ended job and fail again."""
        try:
            self._finish()
        except Exception:
            running = self._running
            log.exception("finishing job %s failed; it is dropped",
                          running.job.command.job_id if running else "?")
            if running is not None and self._running is running:
                with contextlib.suppress(OSError):
                    self.journal.remove(running.job.command.job_id)
                self._done_with_job()

    def _guard(self, handler: Callable[[bytes, str, int], bool | None], msg: Message) -> bool:
        """The handler's verdict (did it act on the message); False if it failed."""
        try:
            if msg.value() is None:
                raise MalformedMessage("empty message")
            return bool(handler(msg.value(), msg.topic(), msg.offset()))
        except Exception as exc:  # one bad command never stops the writer
            self.malformed_commands += 1
            log.warning("skipped a bad message on %s at offset %d: %s", msg.topic(),
                        msg.offset(), exc)
            return True


def run(instrument_topic: str, kafka: KafkaSettings, job: JobSettings, group_id: str,
        stop: threading.Event | None = None, instance_id: str | None = None,
        status_topic: str | None = None, metrics_port: int | None = None,
        instrument: str = "") -> None:
    """`status_topic`: send every report there (default: answ and wrdn to the job's control
    topic, x5f2 to the job pool topic, as at ISIS where both are <INST>_runInfo)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = ServiceSettings(job_pool_topic=instrument_topic,
                               status_topic=status_topic or instrument_topic,
                               group_id=group_id, job=job,
                               instance_id=instance_id or f"{group_id}-{socket.gethostname()}",
                               reports_to_status_topic=status_topic is not None)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    warm_up()  # the histogram kernels, before the writer says it is there
    service = FileWriterService(settings, kafka)
    metrics = serve_metrics(metrics_port, "filewriter", instrument, service.health,
                            lambda: collect(service))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            service.run(stop)
    finally:
        if metrics is not None:
            metrics.close()
