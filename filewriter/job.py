"""One write job: create the file from the nexus_structure, read every data topic from the
run's start (minus a lookback) until its stop, and close the file. h5py is not thread-safe,
so the job's one thread owns the file from open to close."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
from confluent_kafka import Consumer, KafkaException, TopicPartition

from datastream.durable import fsync_dir
from datastream.kafka_client import KafkaSettings, make_consumer, offsets_since
from datastream.schemas import MalformedMessage, schema_id
from filewriter.commands import NS_PER_MS, StartJob
from filewriter.disk_space import DiskFull, check_room
from filewriter.modules import DECODERS, WRITERS, WriterModule
from filewriter.modules.base import RunModule
from filewriter.nexus_structure import Plan, build
from filewriter.output_path import UnsafePath, resolve_output
from filewriter.run_context import RunContext
from filewriter.timing import Window

log = logging.getLogger(__name__)


class JobStartError(Exception):
    """The file could not be created; status code as kafka-to-nexus answers it."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class JobSettings:
    output_dir: Path
    lookback_s: float = 10.0
    leeway_s: float = 1.0
    flush_interval_s: float = 1.0
    # SWMR: readers can open the file while it grows, and a killed writer leaves it readable
    # (with swmr=True) up to its last flush
    swmr: bool = True
    # messages fetched but not yet written; the writer stops fetching at this bound, so a
    # slow disk slows consumption instead of growing memory
    max_queued_mb: int = 64


@dataclass
class JobResult:
    filename: str
    error: str | None = None
    events: int = 0
    malformed: int = 0
    warnings: list[str] = field(default_factory=list)
    # per kind, over all modules: out_of_order, truncated, unconvertible, …
    counts: dict[str, int] = field(default_factory=dict)
    # the writer stopped before the job did (SIGTERM): the file is closed but incomplete, and
    # the job is resumed when the writer starts again
    abandoned: bool = False
    # the run was aborted: the file is closed and the service deletes it (discard_files)
    discarded: bool = False


# files (and their writers) HDF5 could not close; see WriteJob._close_file
_UNCLOSABLE: list[object] = []


FETCH_BYTES = 16 * 1024 * 1024


def data_consumer(kafka: KafkaSettings, max_queued_mb: int) -> Consumer:
    """A consumer for the data topics that holds at most max_queued_mb fetched but not yet
    consumed, and keeps that queue topped up while the writer works."""
    return make_consumer(
        kafka,
        queued_max_messages_kbytes=max_queued_mb * 1024,
        # librdkafka's default waits a whole second before fetching again once the bounded
        # queue was full, which a writer keeping pace with the disk makes it often
        fetch_queue_backoff_ms=5,
        # fetches smaller than the queue keep it topped up; a larger message is still fetched
        # whole (librdkafka grows the fetch for it)
        fetch_max_bytes=FETCH_BYTES, max_partition_fetch_bytes=FETCH_BYTES,
        # a fetch waiting at the end of a partition holds up the watermark request behind it
        # on the same connection, and the job asks for watermarks to know it has caught up
        fetch_wait_max_ms=100)


ISO_WIDTH = 32  # 2026-11-24T23:10:00.000+00:00


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as an answer's reason: its type when it says nothing else, cut short
    (a huge nexus_structure may be quoted whole in it)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def _release_descriptor(h5file: h5py.File) -> None:
    """Point the file's descriptor at /dev/null: HDF5 keeps it open when it cannot close the
    file (its writes failed), and a deleted file on a full disk then frees no space until the
    process ends. HDF5's later writes to it go nowhere."""
    with contextlib.suppress(Exception):
        fd = h5file.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


class WriteJob:
    """`resume`: the job was started before, by this writer before it stopped or died. Its
    file, as far as it got, is moved aside and the job written again from the start, from
    Kafka, into a fresh file: every event once, whatever point the writer died at."""

    def __init__(self, command: StartJob, settings: JobSettings, kafka: KafkaSettings,
                 clock_ns: Callable[[], int] = time.time_ns, resume: bool = False,
                 consumer: Callable[[], Consumer] | None = None) -> None:
        """`consumer`: makes the job's data consumer (the service's, connected ahead of
        time: filewriter.warm_consumer); by default a new one, data_consumer()'s."""
        self.command = command
        self.resume = resume
        self._settings = settings
        self._kafka = kafka
        self._clock_ns = clock_ns
        self._new_consumer = consumer or (
            lambda: data_consumer(self._kafka, self._settings.max_queued_mb))
        self._lock = threading.Lock()
        self._stop_ns = command.stop_ns
        self._file: h5py.File | None = None
        self._plan: Plan | None = None
        self._writers: dict[tuple[str, str], list[WriterModule]] = defaultdict(list)
        self._malformed = 0
        # next offset to read per partition, tracked here because librdkafka's position() is
        # undefined until the first message of a partition is fetched
        self._next_offset: dict[tuple[str, int], int] = {}
        self._abandon = threading.Event()
        self._discard = threading.Event()
        self._unflushed_bytes = 0  # payload bytes taken since the last flush
        # progress for the metrics, read by the scrape thread (whole ints: no lock needed)
        self.bytes_read = 0
        self.lag: dict[str, int] = {}  # topic -> messages behind the end, at the last flush

    @property
    def path(self) -> Path:
        """Raises UnsafePath for a file name that leads outside the output dir."""
        return resolve_output(self._settings.output_dir, self.command.filename)

    @property
    def partial_path(self) -> Path:
        """Where a resumed job keeps the file its earlier attempt left, until it succeeds."""
        path = self.path
        return path.with_name(path.name + ".partial")

    @property
    def stop_ns(self) -> int | None:
        with self._lock:
            return self._stop_ns

    def request_stop(self, stop_ns: int | None) -> None:
        """Thread-safe: stop at stop_ns (None: now)."""
        with self._lock:
            self._stop_ns = stop_ns if stop_ns is not None else self._clock_ns()

    def abandon(self) -> None:
        """Thread-safe: stop reading now and close the file as it is (the writer is going
        away; the job is resumed from the start when it comes back)."""
        self._abandon.set()

    def discard(self) -> None:
        """Thread-safe: the run was aborted. Stop reading now and close the file; once the
        job's thread has ended, discard_files() deletes what it wrote."""
        self._discard.set()
        self._abandon.set()

    @property
    def discarded(self) -> bool:
        return self._discard.is_set()

    def discard_files(self) -> list[str]:
        """Delete the file and the earlier attempt's `.partial`, if there; the names deleted.
        Only once the job's thread has ended: that thread owns the open file."""
        try:
            path = self.path
        except UnsafePath:
            return []  # refused at open: it never made a file
        deleted = []
        for each in (path, self.partial_path):
            if each.exists() or each.is_symlink():
                each.unlink()
                deleted.append(each.name)
        if deleted:
            # the deletion survives a power cut: a run number freed for the next BEGIN stays
            # free
            fsync_dir(path.parent)
        return deleted

    # -- phase 1, in the service thread: the file exists or the job is refused --
    def open(self) -> list[str]:
        """Create the file from the nexus_structure; JobStartError (400: the command is bad,
        500: the file cannot be made) for any failure, with no file left behind: a run start
        that cannot be opened must never take the writer down (it would die again on it at
        every start, from its journal)."""
        try:
            path = self.path
        except UnsafePath as exc:
            raise JobStartError(400, f"refused: {exc}") from exc
        try:
            return self._create(path)
        except JobStartError:
            raise
        except OSError as exc:
            raise JobStartError(500, f"cannot create {path.name}: {_short(exc)}") from exc
        except Exception as exc:  # the writer's own failure: still no reason to die
            log.exception("job %s: opening %s failed", self.command.job_id, path)
            raise JobStartError(500, f"cannot open {path.name}: {_short(exc)}") from exc

    def _create(self, path: Path) -> list[str]:
        if not path.parent.is_dir():
            raise JobStartError(500, f"output folder {path.parent} does not exist")
        if self.resume and (path.exists() or path.is_symlink()):
            # what the earlier attempt wrote stays until this one has written everything
            os.replace(path, self.partial_path)
        if path.exists() or path.is_symlink():
            raise JobStartError(500, f"file {path} already exists")
        self._resolved = path
        try:
            self._file = h5py.File(path, "w-", libver="latest")
        except OSError as exc:
            raise JobStartError(500, f"cannot create {path}: {exc}") from exc
        try:
            self._plan = build(self._file, self.command.nexus_structure, set(WRITERS))
            run = RunContext.of(self.command.start_ns, self.command.instrument,
                                self.command.metadata, self.command.spectrum_map)
            for spec in self._plan.streams:
                group = self._file[spec.group_path]
                cls = WRITERS[spec.module]
                if issubclass(cls, RunModule):
                    writer = cls(group, spec.config, run)
                    for source in writer.more_sources:
                        self._writers[(spec.topic, source)].append(writer)
                else:
                    writer = cls(group, spec.config)
                self._writers[(spec.topic, spec.source)].append(writer)
                self._plan.warnings.extend(writer.warnings)
            for meta in self._plan.metadata:
                group = self._file[meta.group_path]
                if meta.name == "start_time":
                    group["start_time"] = _iso(self.command.start_ns)
                else:  # filled in at close: in SWMR mode no dataset can be added then
                    group.create_dataset("end_time", shape=(), dtype=f"S{ISO_WIDTH}")
            self._file.flush()
            if self._settings.swmr:
                self._file.swmr_mode = True
        except BaseException as exc:
            self._unmake(path)
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # the filesystem's failure (disk full, permission), not the structure
            if isinstance(exc, Exception):
                # whatever a nexus_structure of the wrong shape raises from the builder, a
                # module, numpy or h5py (a list for an object, a value no dtype holds, a
                # name used twice, nesting deeper than the stack)
                raise JobStartError(500, f"invalid nexus_structure: {_short(exc)}") from exc
            raise
        for warning in self._plan.warnings:
            log.warning("job %s: %s", self.command.job_id, warning)
        return list(self._plan.warnings)

    def _unmake(self, path: Path) -> None:
        """Close and delete the file a failed open made: no half-made file stays."""
        h5file, self._file = self._file, None
        self._writers.clear()
        self._plan = None
        if h5file is not None:
            try:
                h5file.close()
            except Exception:
                _release_descriptor(h5file)
                _UNCLOSABLE.append(h5file)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def cancel(self) -> None:
        """Undo open() when the job cannot go on to run (the service could not follow its
        control topic): the file is closed and deleted."""
        self._unmake(self._resolved)

    # -- phase 2, in the job's own thread --
    def run(self) -> JobResult:
        result = JobResult(self.command.filename, warnings=list(self._plan.warnings))
        consumer: Consumer | None = None
        try:
            topics = sorted({topic for topic, _ in self._writers})
            if topics:
                consumer = self._new_consumer()
                partitions = self._seek(consumer, topics)
                self._consume(consumer, partitions)
            else:  # a static file, as kafka-to-nexus writes one: nothing to read until stop
                self._wait_for_stop()
        except DiskFull as exc:
            log.error("job %s: %s", self.command.job_id, exc)
            result.error = str(exc)
        except Exception as exc:
            log.exception("job %s failed", self.command.job_id)
            result.error = str(exc)
        finally:
            if consumer is not None:
                consumer.close()
            try:
                self._close_file()
            except Exception as exc:  # e.g. disk full on the last flush
                log.exception("job %s: closing %s failed", self.command.job_id, self.path)
                result.error = result.error or f"closing the file failed: {exc}"
        result.discarded = self._discard.is_set()
        result.abandoned = (self._abandon.is_set() and result.error is None
                            and not result.discarded)
        if result.discarded:
            pass  # the service deletes the file and the partial one, both unwanted now
        elif self.resume and result.error is None and not result.abandoned:
            self.partial_path.unlink(missing_ok=True)
        elif self.resume and self.partial_path.exists():
            result.warnings.append(f"the earlier attempt's file is kept as "
                                   f"{self.partial_path.name}")
        result.events = self.events_written
        result.malformed = self._malformed
        for writer in self._all_writers():
            for kind, n in writer.counts.items():
                result.counts[kind] = result.counts.get(kind, 0) + n
        return result

    def _seek(self, consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=10)
        missing = [t for t in topics if t not in metadata.topics
                   or metadata.topics[t].error is not None]
        if missing:
            raise RuntimeError(f"data topic(s) not found on the broker: {', '.join(missing)}")
        start_ms = (self.command.start_ns // NS_PER_MS
                    - int(self._settings.lookback_s * 1000))
        wanted = [TopicPartition(t, p, start_ms)
                  for t in topics for p in metadata.topics[t].partitions]
        # the end of each partition *before* the time lookup: a message appended between the
        # two lookups lies at or after it, so reading from there cannot skip the run's first
        # frame (reading from an end taken afterwards could)
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(
            tp, timeout=10, cached=False)[1] for tp in wanted}
        # nothing at or after start - lookback yet: the run's data are all to come
        offsets = offsets_since(consumer, wanted, ends=ends)
        for tp in offsets:
            self._next_offset[(tp.topic, tp.partition)] = tp.offset
        consumer.assign(offsets)
        return offsets

    @property
    def _leeway_ns(self) -> int:
        return int(self._settings.leeway_s * 1e9)

    def _consume(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        leeway_ns = self._leeway_ns
        done: set[tuple[str, int]] = set()
        last_flush = time.monotonic()
        while True:
            # take what is queued without waiting for a full batch: waiting leaves the disk
            # idle while librdkafka's bounded queue is full
            if self._abandon.is_set():
                return
            messages = consumer.consume(num_messages=500, timeout=0)
            if not messages:
                # all read already? then the file closes now, not after a wait for more
                # (0.2 s of every run's close, idle)
                if self._caught_up(consumer, partitions, done):
                    return
                messages = consumer.consume(num_messages=1, timeout=0.2)
            stop_ns = self.stop_ns
            window = Window(self.command.start_ns, stop_ns)
            todo = []
            for msg in messages:
                if msg.error():
                    log.warning("job %s: %s", self.command.job_id, msg.error())
                    continue
                self.bytes_read += len(msg.value() or b"")
                key = (msg.topic(), msg.partition())
                self._next_offset[key] = msg.offset() + 1
                if key in done:
                    continue
                _, ts_ms = msg.timestamp()
                if stop_ns is not None and ts_ms * NS_PER_MS > stop_ns + leeway_ns:
                    done.add(key)
                    consumer.pause([TopicPartition(*key)])
                    continue
                todo.append(msg)
            if todo:
                self._check_room(todo)
            for msg in todo:
                self._dispatch(msg.topic(), msg.value(), window, msg.offset())
            now = time.monotonic()
            if now - last_flush > self._settings.flush_interval_s:
                self._flush()
                self._note_lag(consumer, partitions)
                last_flush = now
            if messages:
                continue
            if self._caught_up(consumer, partitions, done, cached_first=False):
                return

    def _caught_up(self, consumer: Consumer, partitions: list[TopicPartition],
                   done: set[tuple[str, int]], cached_first: bool = True) -> bool:
        """Past stop + leeway with every partition ended: `done` (a message past the stop
        seen), or all of it read. Asking the broker for its watermarks is slow, so not while
        messages flow; cached_first: only once the watermark the last fetch brought says
        all is read (it is never above the broker's)."""
        stop_ns = self.stop_ns
        if stop_ns is None or self._clock_ns() < stop_ns + self._leeway_ns:
            return False
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in done:
                continue
            if cached_first:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0 or self._next_offset[key] < high:
                    continue  # more to come, or nothing known yet: no request now
            if self._drained(consumer, tp):
                done.add(key)
        return len(done) >= len(partitions)

    def _note_lag(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Messages behind each topic's end, from the watermarks the fetches brought (no
        request to the broker)."""
        lag: dict[str, int] = {}
        for tp in partitions:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                behind = max(0, high - self._next_offset[(tp.topic, tp.partition)])
                lag[tp.topic] = lag.get(tp.topic, 0) + behind
        self.lag = lag

    @property
    def queued_bytes(self) -> int:
        """Taken from Kafka, not yet flushed to the file."""
        return self._unflushed_bytes

    @property
    def events_written(self) -> int:
        return sum(getattr(w, "total_events", 0) for w in self._all_writers())

    def _wait_for_stop(self) -> None:
        while not self._abandon.is_set():
            stop_ns = self.stop_ns
            if stop_ns is not None and self._clock_ns() >= stop_ns:
                return
            self._abandon.wait(0.1)

    def _check_room(self, messages: list) -> None:
        """DiskFull before anything is written that might not fit (see disk_space). Only the
        messages to be written count: a batch may also hold the rest of the topic past the
        run's stop, which counted made a small run's file refused on a disk it fitted."""
        self._unflushed_bytes += sum(len(m.value() or b"") for m in messages)
        check_room(self._resolved, self._unflushed_bytes)

    def _drained(self, consumer: Consumer, tp: TopicPartition) -> bool:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        except KafkaException as exc:
            log.warning("watermarks of %s[%d]: %s", tp.topic, tp.partition, exc)
            return False
        return self._next_offset[(tp.topic, tp.partition)] >= high

    def _dispatch(self, topic: str, payload: bytes | None, window: Window, offset: int) -> None:
        """Write one message. A message that cannot be read or written (a corrupt buffer, a
        vector missing, a time no file can hold) is counted and skipped, whatever it raises:
        one bad message must not end the run's file. The writer modules check a message
        whole before they keep any of it, so a skipped one leaves nothing half-written."""
        try:
            if payload is None:
                raise MalformedMessage("empty message")
            sid = schema_id(payload)
            decoder = DECODERS.get(sid)
            if decoder is None:
                return  # a schema no module here writes (al00, ep01 before issue 4, …)
            decoded = decoder(payload)
            for writer in self._writers.get((topic, decoded.source), ()):
                if sid in writer.accepts:
                    writer.write(decoded, window)
        except OSError:
            raise  # the file's failure (HDF5 could not write), not the message's: job error
        except Exception as exc:
            self._malformed += 1
            reason = str(exc) if isinstance(exc, MalformedMessage) else (
                f"{type(exc).__name__}: {exc}")
            log.warning("job %s: skipped malformed message at %s offset %d: %s",
                        self.command.job_id, topic, offset, reason[:300])

    def _all_writers(self) -> list[WriterModule]:
        """Each writer once (a RunModule is listed under each source it reads)."""
        return list({id(w): w for ws in self._writers.values() for w in ws}.values())

    def _flush(self) -> None:
        for writer in self._all_writers():
            writer.flush()
        self._file.flush()
        self._unflushed_bytes = 0

    def _close_file(self) -> None:
        if self._file is None:
            return
        try:
            stop_ns = self.stop_ns
            for writer in self._all_writers():
                if isinstance(writer, RunModule):
                    writer.set_stop(stop_ns)
                writer.close()
            for meta in self._plan.metadata if self._plan else []:
                if meta.name == "end_time" and stop_ns is not None:
                    self._file[meta.group_path]["end_time"][()] = _iso(stop_ns).encode()
        finally:
            h5file, self._file = self._file, None
            try:
                h5file.close()
            except Exception:
                # HDF5 cannot close a file whose writes failed, and freeing its objects later
                # crashed the process: keep them (a small leak per failed file), but let go
                # of the file itself, so deleting it frees the disk
                _release_descriptor(h5file)
                _UNCLOSABLE.append((h5file, self._writers))
                raise
