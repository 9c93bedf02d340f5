"""The file writer under structure-aware fuzzing (hypothesis): valid pl72 / 6s4t and valid
ev44 / ev42 / f144 / f142 / al00 / ep01 messages, then mutated (truncated, a wrong file
identifier, bytes flipped, times out of range, non-finite values, vectors of mismatched or
huge lengths, deep or huge nexus_structure JSON, random bytes).

- In process, cheaply, thousands of messages: the job's per-message dispatch never lets an
  exception out, the file closes whole and holds every good message's events; a fuzzed run
  start is opened or refused (JobStartError / CommandError), never anything else, and a
  refused one leaves no file; a fuzzed file name resolves inside the data dir or is refused.
- Against the real broker and a real `datastream filewriter` process: batches of fuzzed
  messages on every topic it reads, after each of which the process must still be there and
  answering; then one normal run whose file must hold exactly its events, with a wrdn success.

Examples are data (specs rendered to bytes), so hypothesis shrinks a failure to a minimal
input. The seed is printed and taken from FUZZ_SEED: `FUZZ_SEED=<n> pytest tests/fuzz/...`
replays a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from hypothesis import HealthCheck, event, given, note, seed, settings
from hypothesis import strategies as st
from streaming_data_types.action_response_answ import deserialise_answ
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.logdata_f144 import serialise_f144
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import KafkaSettings, deliver, make_consumer, make_producer
from datastream.schemas import schema_id
from datastream.schemas.f142 import serialise_f142
from filewriter.commands import CommandError, parse_start
from filewriter.job import JobSettings, JobStartError, WriteJob
from filewriter.output_path import UnsafePath, resolve_output
from filewriter.timing import Window
from ioc.nexus_template import RunMetadata, nexus_structure
from tests.integration.conftest import topics, writer_process  # noqa: F401 (fixture)

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

FUZZ_SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
MS = 1_000_000
# fuzzed data are stamped (Kafka time and message times) an hour back: the normal run at the
# end, which looks back only seconds, never reads them, while the fuzzed jobs (started in
# that hour) do
T0_NS = (time.time_ns() // MS - 3_600_000) * MS
GOOD_SOURCE = "DAE"
# the data dir's folders no file name may reach (the run-number store, the writer's journal)
SERVICE_DIRS = {"runinfo", ".filewriter-jobs"}
INT64 = (-(2**63), 2**63 - 1)


def _reproduce(what: str) -> str:
    return f"{what} (FUZZ_SEED={FUZZ_SEED} reproduces this run)"


# -- data messages: a spec (plain data, shrinkable), rendered to bytes --

@dataclass(frozen=True)
class Mutation:
    kind: str = "none"  # none, truncate, ident, flip, random
    cut: float = 0.5
    ident: bytes = b"xxxx"
    flips: tuple[tuple[int, int], ...] = ()
    noise: bytes = b""

    def apply(self, payload: bytes) -> bytes:
        if self.kind == "truncate":
            return payload[:int(len(payload) * self.cut)]
        if self.kind == "ident":
            return payload[:4] + self.ident + payload[8:]
        if self.kind == "flip" and payload:
            out = bytearray(payload)
            for pos, xor in self.flips:
                out[pos % len(out)] ^= xor
            return bytes(out)
        if self.kind == "random":
            return self.noise
        return payload


def _wrap64(t: int) -> int:
    """Into an int64 field's range (out-of-range times are fuzzed as the field holds them)."""
    return (t - INT64[0]) % 2**64 + INT64[0]


@dataclass(frozen=True)
class Data:
    schema: str  # ev44, ev42, f144, f142, al00, ep01
    source: str
    t_ns: int
    events: int = 0  # ev44 / ev42: events; f144 / f142: values of an array (0: a scalar)
    pulses: int = 1
    pixel_delta: int = 0  # pixel ids minus times of flight: a mismatched vector
    index_shuffle: bool = False  # the pulse index not ascending
    value: float | int = 0.0
    message_id: int = 0
    mutation: Mutation = Mutation()

    def render(self) -> bytes:
        return self.mutation.apply(self._valid())

    def _valid(self) -> bytes:
        t64 = _wrap64(self.t_ns)
        tof = np.arange(self.events, dtype=np.int32) % 100_000
        ids = (np.arange(self.events, dtype=np.int64) + self.message_id % 2**20 * 1000) % 2**31
        if self.schema == "ev44":
            pulses = max(1, self.pulses)
            index = np.linspace(0, self.events, pulses, endpoint=False).astype(np.int32)
            if self.index_shuffle:
                index = index[::-1].copy()
            ref = np.array([_wrap64(t64 + k * 1000) for k in range(pulses)], dtype=np.int64)
            pixels = np.resize(ids, max(0, self.events + self.pixel_delta)).astype(np.int32)
            return serialise_ev44(self.source, self.message_id, ref, index, tof, pixels)
        if self.schema == "ev42":
            return serialise_ev42(self.source, self.message_id, self.t_ns % 2**64, tof,
                                  np.resize(ids, max(0, self.events + self.pixel_delta)))
        value = (np.full(self.events, self.value) if self.events else self.value)
        if self.schema == "f144":
            return serialise_f144(self.source, value, t64)
        if self.schema == "f142":
            return serialise_f142(value, self.source, self.t_ns % 2**64)
        if self.schema == "al00":
            return serialise_al00(self.source, t64, Severity.MAJOR, "x" * (self.events % 5000))
        return serialise_ep01(t64, ConnectionInfo.CONNECTED, self.source)


times = st.one_of(
    st.integers(T0_NS - 10**9, T0_NS + 20 * 10**9),
    st.sampled_from([0, -1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 10**19]),
    st.integers(-(2**64), 2**65))
values = st.one_of(st.floats(), st.integers(-(2**63), 2**63 - 1),
                   st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308]))
# vectors: mostly small, sometimes large, now and then a million values (8 MB)
sizes = st.one_of(st.integers(0, 40), st.sampled_from([0, 1000, 100_000]),
                  st.integers(0, 19).map(lambda k: 1_000_000 if k == 19 else k))
mutations = st.one_of(
    st.just(Mutation()),
    st.builds(Mutation, kind=st.just("truncate"), cut=st.floats(0, 1)),
    st.builds(Mutation, kind=st.just("ident"),
              ident=st.sampled_from([b"ev44", b"ev42", b"f144", b"f142", b"al00", b"ep01",
                                     b"pl72", b"6s4t", b"\xff\xfe\x00\x01", b"hs01"])),
    st.builds(Mutation, kind=st.just("flip"),
              flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)),
                             min_size=1, max_size=4).map(tuple)),
    st.builds(Mutation, kind=st.just("random"), noise=st.binary(max_size=300)))


def bad_data(message_ids: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Data]:
    """Any message of the writer's data schemas, mostly mutated or out of range. Message ids
    from 2**40 on, apart from the good ones' (a mutated copy must not pass for a repeat)."""
    return st.builds(
        Data, schema=st.sampled_from(["ev44", "ev42", "f144", "f142", "al00", "ep01"]),
        source=st.sampled_from([GOOD_SOURCE, "T", "N", "W", "", "x" * 300]),
        t_ns=times, events=sizes, pulses=st.integers(0, 5),
        pixel_delta=st.sampled_from([0, 0, -1, 1, -1000, 100_000]),
        index_shuffle=st.booleans(), value=values,
        message_id=message_ids or st.integers(2**40, 2**62), mutation=mutations)


# -- the in-process layer: a job's dispatch, with a file per example --

LOG_TOPIC = "FUZZ_sampleEnv"
EVENT_TOPIC = "FUZZ_events"
STRUCTURE = {"children": [{"type": "group", "name": "entry", "children": [
    {"type": "group", "name": "events", "children": [
        {"module": "ev44", "config": {"topic": EVENT_TOPIC, "source": GOOD_SOURCE}}]},
    {"type": "group", "name": "T", "children": [
        {"module": "f144", "config": {"topic": LOG_TOPIC, "source": "T"}}]},
    {"type": "group", "name": "N", "children": [
        {"module": "f142", "config": {"topic": LOG_TOPIC, "source": "N", "dtype": "int16"}}]},
    {"type": "group", "name": "W", "children": [
        {"module": "f144", "config": {"topic": LOG_TOPIC, "source": "W", "array_size": 3,
                                      "dtype": "float"}}]},
    {"type": "group", "name": "S", "children": [
        {"module": "f142", "config": {"topic": LOG_TOPIC, "source": "x" * 300,
                                      "dtype": "string", "string_size": 8}}]},
    {"module": "mdat", "config": {"items": ["start_time", "end_time"]}}]}]}
WINDOW = Window(T0_NS, T0_NS + 10 * 10**9)


def good_frame(k: int, n: int) -> Data:
    """A valid one-pulse ev44 inside WINDOW, event ids unique to it."""
    return Data("ev44", GOOD_SOURCE, T0_NS + k * 10**6, events=n, message_id=k)


@st.composite
def dispatch_streams(draw) -> list[tuple[bool, Data, bool]]:
    """(good?, message, flush after it?), good frames and bad messages interleaved."""
    goods = [good_frame(k, n) for k, n in
             enumerate(draw(st.lists(st.integers(0, 30), max_size=8)))]
    bads = draw(st.lists(bad_data(), max_size=12))
    items = [(True, g) for g in goods] + [(False, b) for b in bads]
    order = draw(st.permutations(range(len(items))))
    return [(*items[i], draw(st.booleans())) for i in order]


@settings(max_examples=int(os.environ.get("FUZZ_DISPATCH_EXAMPLES", 250)), deadline=None,
          derandomize=False, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@seed(FUZZ_SEED)
@given(dispatch_streams())
def test_dispatch_skips_every_bad_message_and_writes_every_good_one(stream):
    note(_reproduce("dispatch example"))
    with tempfile.TemporaryDirectory() as tmp:
        job = WriteJob(_command(STRUCTURE, "F.nxs"), JobSettings(output_dir=Path(tmp)),
                       KafkaSettings("unused:9092"))
        job.open()
        good_ids: list[np.ndarray] = []
        for offset, (good, message, flush) in enumerate(stream):
            topic = EVENT_TOPIC if message.schema in ("ev44", "ev42") else LOG_TOPIC
            job._dispatch(topic, message.render(), WINDOW, offset)  # must not raise
            if good:
                good_ids.append(np.arange(message.events) + message.message_id * 1000)
            if flush:
                job._flush()
        job.request_stop(WINDOW.stop_ns)
        job._close_file()
        bad = sum(not good for good, _, _ in stream)
        assert job._malformed <= bad
        with h5py.File(Path(tmp) / "F.nxs", "r") as f:
            events = f["entry/events"]
            ids, index = events["event_id"][:], events["event_index"][:]
            assert len(ids) == job.events_written
            assert len(index) == len(events["event_time_zero"])
            assert np.all(np.diff(index) >= 0) and (not len(index) or index[-1] <= len(ids))
            expected = np.concatenate(good_ids) if good_ids else np.zeros(0)
            missing = np.setdiff1d(expected, ids)
            assert not len(missing), f"good events missing from the file: {missing[:10]}"
            assert f["entry/end_time"][()]
            for log in ("T", "N", "W", "S"):
                assert len(f[f"entry/{log}/time"]) == len(f[f"entry/{log}/value"])


# -- run starts, in process: opened or refused, nothing else --

def _command(structure: dict, filename: str):
    from filewriter.commands import StartJob

    return StartJob(job_id=str(uuid.uuid4()), filename=filename, start_ns=T0_NS,
                    stop_ns=None, nexus_structure=structure, control_topic="",
                    run_name="", instrument="", service_id="")


HOSTILE_NAMES = ["runinfo/INST_runnumber.txt", ".filewriter-jobs/x/y.pl72", "RUNINFO",
                 "a\x00b", "a\x1bb.nxs", "a\u202eb.nxs", "\u2067.nxs", "../up.nxs",
                 "/etc/passwd", "sub/", ".", "", " ", "x" * 300, "d/" * 2100 + "x",
                 "a\udcff.nxs", "ok/../../x.nxs", "./runinfo"]
plain_names = st.uuids().map(lambda u: f"FZ{u.hex[:12]}.nxs")
filenames = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=40), plain_names,
                      plain_names)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                      st.text(max_size=20))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def structures(draw, events_topic: str = EVENT_TOPIC, logs_topic: str = LOG_TOPIC) -> dict:
    """The valid structure, then some of its nodes replaced or joined by hostile ones."""
    base = json.loads(json.dumps(STRUCTURE).replace(EVENT_TOPIC, events_topic)
                      .replace(LOG_TOPIC, logs_topic))
    entry = base["children"][0]["children"]
    modules = [group["children"][0] for group in entry if group.get("type") == "group"]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["config", "node", "dataset", "link", "deep", "wide",
                                     "big", "module", "attrs"]))
        if kind == "config":
            draw(st.sampled_from(modules))["config"] = draw(json_values)
        elif kind == "node":
            entry.append(draw(json_values))
        elif kind == "dataset":
            entry.append({"module": "dataset", "config": {
                "name": draw(st.text(max_size=10)), "values": draw(json_values),
                "dtype": draw(st.sampled_from(["int8", "uint64", "float", "string", "bool",
                                               "int128", "", "f8"]))}})
        elif kind == "link":
            entry.append({"module": "link", "config": {
                "name": draw(st.sampled_from(["events", "T", "new", "a/b", ""])),
                "source": draw(st.sampled_from(["/entry", "/nowhere", "entry/T", "/"]))}})
        elif kind == "deep":
            node: dict = {"type": "group", "name": "d"}
            for _ in range(draw(st.integers(1, 200))):
                node = {"type": "group", "name": "d", "children": [node]}
            entry.append(node)
        elif kind == "wide":
            entry.extend({"type": "group", "name": f"w{i}"}
                         for i in range(draw(st.integers(1, 2000))))
        elif kind == "big":
            entry.append({"module": "dataset", "config": {
                "name": "big", "values": "x" * draw(st.integers(0, 1_000_000))}})
        elif kind == "module":
            entry.append({"module": draw(st.sampled_from(["ev44", "f144", "hs01", "da00",
                                                          "se00", "tdct", "nope"])),
                          "config": {"topic": logs_topic, "source": "Z",
                                     "array_size": draw(st.sampled_from([1, -1, 2**40])),
                                     "shape": draw(json_values),
                                     "variables": draw(json_values),
                                     "chunk_size": draw(json_values)}})
        else:
            base["children"][0]["attributes"] = draw(json_values)
    return base


ANY_MS = st.integers(0, 2**64 - 1)
NO_CONTROL = st.just("")


def pl72_payloads(filename_strategy=filenames, structure_strategy=None, start=ANY_MS,
                  control=NO_CONTROL, mutation=mutations,
                  job_ids=None) -> st.SearchStrategy[tuple]:
    """(job_id, filename, structure, start ms, stop ms, control topic, mutation)."""
    if job_ids is None:
        job_ids = st.one_of(st.uuids().map(str), st.uuids().map(str), st.text(max_size=40))
    return st.tuples(job_ids, filename_strategy,
                     structures() if structure_strategy is None else structure_strategy, start,
                     st.one_of(st.none(), st.integers(1, 2**64 - 1)), control, mutation)


def _wire(text: str) -> str:
    """As a FlatBuffers string can hold it (a lone surrogate cannot be UTF-8; invalid bytes
    on the wire come from the flip mutation)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def render_pl72(spec: tuple) -> bytes:
    job_id, filename, structure, start, stop, control, mutation = spec
    return mutation.apply(serialise_pl72(_wire(job_id), _wire(filename), start_time=start,
                                         stop_time=stop,
                                         nexus_structure=json.dumps(structure),
                                         control_topic=control))


@settings(max_examples=int(os.environ.get("FUZZ_START_EXAMPLES", 400)), deadline=None,
          derandomize=False, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@seed(FUZZ_SEED)
@given(pl72_payloads(start=st.one_of(st.just(T0_NS // MS), st.just(T0_NS // MS),
                                     st.integers(0, 2**64 - 1)),
                     mutation=st.one_of(st.just(Mutation()), mutations)))
def test_a_fuzzed_run_start_is_opened_or_refused_and_a_refused_one_leaves_nothing(spec):
    note(_reproduce("run start example"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "runinfo").mkdir()
        try:
            command = parse_start(render_pl72(spec))
        except CommandError as exc:
            assert exc.status_code in (400, 500)
            event(f"refused at parse {exc.status_code}")
            return
        job = WriteJob(command, JobSettings(output_dir=data), KafkaSettings("unused:9092"))
        try:
            job.open()
        except JobStartError as exc:
            assert exc.status_code in (400, 500)
            event(f"refused at open {exc.status_code}")
            assert sorted(p.name for p in data.iterdir()) == ["runinfo"], "a file was left"
            assert not list((data / "runinfo").iterdir())
            return
        event("opened")
        job.request_stop(command.start_ns)
        job._close_file()
        made = job.path.relative_to(data.resolve())
        assert made.parts[0].casefold() not in SERVICE_DIRS
        job.path.unlink()


@settings(max_examples=500, deadline=None, derandomize=False, print_blob=True)
@seed(FUZZ_SEED)
@given(st.one_of(filenames, st.lists(st.sampled_from(
    ["a", "..", ".", "runinfo", "RunInfo", ".filewriter-jobs", "", "\x7f", "\u202d", "x" * 250]),
    max_size=5).map("/".join)))
def test_a_fuzzed_file_name_resolves_inside_the_data_dir_or_is_refused(name):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        try:
            path = resolve_output(root, name)
        except UnsafePath:
            return
        inside = path.resolve().relative_to(root)  # raises if outside
        assert inside.parts and inside.parts[0].casefold() not in SERVICE_DIRS
        assert not any(ord(c) < 0x20 or c == "\x7f" or "\u202a" <= c <= "\u202e"
                       or "\u2066" <= c <= "\u2069" for c in name)


# -- the real writer process against the real broker --

class RunInfoTail:
    """Every message of the run-info topic, read as it comes (one consumer for the test)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._consumer = make_consumer(kafka)
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.messages: list[bytes] = []

    def wait_for(self, predicate, timeout: float, alive=lambda: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            found = [x for x in self._decoded() if predicate(x)]
            if found:
                return found[0]
            for msg in self._consumer.consume(500, timeout=0.2):
                if not msg.error() and msg.value():
                    self.messages.append(msg.value())
        return None

    def _decoded(self):
        for payload in self.messages:
            with contextlib.suppress(Exception):
                sid = schema_id(payload)
                if sid == "answ":
                    yield deserialise_answ(payload)
                elif sid == "wrdn":
                    yield deserialise_wrdn(payload)

    def close(self) -> None:
        self._consumer.close()


def _tail(path: Path, n: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-n:]


@pytest.mark.timeout(240)
def test_the_writer_process_survives_fuzzed_batches_then_writes_a_normal_run(
        kafka, topics, tmp_path):  # noqa: F811 (topics: the fixture)
    print(_reproduce(f"writer process fuzz, T0 {T0_NS}"))
    producer = make_producer(kafka)
    tail = RunInfoTail(kafka, topics.run_info)
    stats = {"batches": 0, "data": 0, "commands": 0}
    fuzz_start_ms = T0_NS // MS - 5000
    fuzz_jobs: list[str] = []
    culprit: list[tuple] = []
    with writer_process(kafka, topics, tmp_path) as writer:
        run_structures = structures(topics.events, topics.sample_env)
        # fuzzed starts that can be taken are stamped in the fuzz hour with a stop there too,
        # so the writer finishes them at once (and must not stay busy with one)
        command = st.one_of(
            pl72_payloads(filename_strategy=filenames, structure_strategy=run_structures,
                          start=st.just(fuzz_start_ms), control=st.sampled_from(
                              [topics.run_info, topics.run_info, "", "bad topic!"]),
                          mutation=st.one_of(st.just(Mutation()), st.builds(
                              Mutation, kind=st.just("truncate"), cut=st.floats(0, 1))))
            .map(lambda s: ("pl72", (*s[:4], fuzz_start_ms + 20_000, *s[5:]))),
            st.tuples(st.just("6s4t"), st.tuples(
                st.one_of(st.uuids().map(str), st.text(max_size=10)),
                st.one_of(st.none(), st.integers(0, 2**64 - 1)),
                st.sampled_from(["", "abort:x", str(uuid.uuid4())]), mutations)),
            st.tuples(st.just("bytes"), st.binary(max_size=200)))
        # starts a writer takes unless their structure is at fault: the job's open, its
        # reading of the fuzzed data and its close are exercised in the real process
        plausible = pl72_payloads(
            filename_strategy=plain_names, structure_strategy=run_structures,
            start=st.just(fuzz_start_ms), control=st.just(topics.run_info),
            mutation=st.just(Mutation()), job_ids=st.uuids().map(str),
        ).map(lambda s: ("pl72", (*s[:4], fuzz_start_ms + 20_000, *s[5:])))

        @settings(max_examples=int(os.environ.get("FUZZ_WRITER_BATCHES", 25)), deadline=None,
                  derandomize=False, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
        @seed(FUZZ_SEED)
        @given(st.lists(bad_data(), min_size=5, max_size=40),
               st.lists(command, min_size=1, max_size=8), st.lists(plausible, max_size=2))
        def batch(data: list[Data], commands: list[tuple], starts: list[tuple]) -> None:
            # the writer is one process for all examples: once dead, every later example
            # fails at once, and the message names the batch that killed it (shrinking can
            # not replay it on a fresh writer, so the culprit is kept as it came)
            assert not culprit, _reproduce(
                f"the writer died on this batch: {repr(culprit[0])[:20_000]}")
            commands = starts + commands
            for message in data:
                topic = topics.events if message.schema in ("ev44", "ev42") else (
                    topics.sample_env)
                stamp = T0_NS // MS + (abs(message.t_ns) // MS) % 10_000
                producer.produce(topic, message.render(), timestamp=stamp)
            producer.flush(30)
            for kind, spec in commands:
                if kind == "pl72":
                    fuzz_jobs.append(spec[0])
                    payload = render_pl72(spec)
                elif kind == "6s4t":
                    job_id, stop, command_id, mutation = spec
                    payload = mutation.apply(serialise_6s4t(job_id, command_id=command_id,
                                                            stop_time=stop))
                else:
                    payload = spec
                producer.produce(topics.run_info, payload)
            # a stop for a job no writer took: answered (400) once the writer has read all
            # of the batch; it being answered is the writer's proof of life
            probe = str(uuid.uuid4())
            deliver(producer, topics.run_info, serialise_6s4t(
                probe, command_id=str(uuid.uuid4()), stop_time=T0_NS // MS))
            answered = tail.wait_for(lambda a: getattr(a, "job_id", "") == probe, 60,
                                     alive=lambda: writer.poll() is None)
            if writer.poll() is not None or answered is None:
                culprit.append((data, commands))
            stats["batches"] += 1
            stats["data"] += len(data)
            stats["commands"] += len(commands)
            assert writer.poll() is None, _reproduce(
                f"the writer process exited ({writer.returncode}):\n"
                f"{_tail(tmp_path / 'writer.log')}")
            assert answered is not None, _reproduce(
                f"the writer stopped answering:\n{_tail(tmp_path / 'writer.log')}")

        try:
            batch()
        finally:
            codes = [a.status_code for a in tail._decoded() if hasattr(a, "status_code")]
            print(f"fuzzed batches {stats}; answers by code "
                  f"{ {c: codes.count(c) for c in sorted(set(codes))} }; wrdn "
                  f"{sum(hasattr(w, 'error_encountered') for w in tail._decoded())}")
        # a fuzzed job that could still be open (no stop) is stopped: the next run needs
        # the writer free
        for job_id in fuzz_jobs:
            producer.produce(topics.run_info, serialise_6s4t(
                job_id, command_id=str(uuid.uuid4()), stop_time=fuzz_start_ms + 20_000))
        producer.flush(10)

        # one normal run, after all that: every event of it in its file, and a success
        job_id = str(uuid.uuid4())
        start_ms = time.time_ns() // MS
        structure = nexus_structure(RunMetadata(topics.instrument, 1, "after fuzz", ("Ada",),
                                                "RB1"), topics.events, GOOD_SOURCE, [])
        deliver(producer, topics.run_info, serialise_pl72(
            job_id, "AFTERFUZZ.nxs", start_time=start_ms, nexus_structure=json.dumps(structure),
            control_topic=topics.run_info, run_name="1", instrument_name=topics.instrument))
        frames, per_frame = 20, 50
        for k in range(frames):
            t = (start_ms + 10 + k * 20) * MS
            ids = np.arange(k * per_frame, (k + 1) * per_frame, dtype=np.int32)
            producer.produce(topics.events, serialise_ev44(
                GOOD_SOURCE, k, np.array([t], np.int64), np.array([0], np.int32), ids % 97,
                ids), timestamp=t // MS)
        producer.flush(10)
        stop_ms = start_ms + 10 + frames * 20
        while time.time_ns() // MS <= stop_ms:
            time.sleep(0.05)
        deliver(producer, topics.run_info, serialise_6s4t(
            job_id, command_id=str(uuid.uuid4()), stop_time=stop_ms))
        done = tail.wait_for(lambda w: hasattr(w, "error_encountered") and w.job_id == job_id,
                             90)
        assert done is not None, _reproduce(
            f"no wrdn for the normal run:\n{_tail(tmp_path / 'writer.log')}")
        assert not done.error_encountered, _reproduce(done.message)
        assert writer.poll() is None
        # nor did any of the writer's threads end (its process would still answer)
        log_text = (tmp_path / "writer.log").read_text(errors="replace")
        at = log_text.find("Exception in thread")
        assert at < 0, _reproduce(f"a writer thread ended:\n{log_text[at:at + 4000]}")
    tail.close()
    with h5py.File(tmp_path / "AFTERFUZZ.nxs", "r") as f:
        ids = f["raw_data_1/detector_1_events/event_id"][:]
        assert len(ids) == frames * per_frame, _reproduce(f"{len(ids)} events")
        assert sorted(ids.tolist()) == list(range(frames * per_frame))
    assert not (tmp_path / "runinfo").exists(), "a fuzzed run start made the service folder"
