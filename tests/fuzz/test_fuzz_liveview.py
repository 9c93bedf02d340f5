"""The live view fuzzed at every entry point, on real parts: the real broker, the live view
run in-process as the instrument runs it (`liveview.service.run`, with its PVA and CA servers
and its live page), and the real simulated DAE for the run that checks it afterwards.

Structure-aware mutations, each example kept as data (the fields a message is built from,
then a byte-level change) so that hypothesis shrinks a failure to a minimal input:

- the events topic: ev44/ev42 with vectors of disagreeing lengths, descending or
  out-of-range pulse indices, pixel ids and times of flight at and past their types' ends,
  vectors of up to 1M events, extreme pulse times, truncated or re-labelled bytes;
- runInfo: pl72 and 6s4t with absurd times, run names and metadata JSON (a bad "tcb");
- the just-bin-it command topic: JSON with Infinity, NaN, huge numbers, wrong types, deep
  nesting and long arrays (bounded);
- every LIVE:*:SP over PVA (p4p): NaN, +-inf, huge, negative, wrong type, long strings;
  every LIVE: and DAE: CA name (caproto client);
- the live page: absurd query parameters, and many slow connections at once (loopback).

After each example the live view runs on; at the end one normal run counts exactly
(LIVE:EVENTS == the DAE's total). Also a fast in-process property of read_events and
RunHistogram.add over thousands of mutated messages. Seeds are printed (print_blob);
FUZZ_SEED=n repeats one."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.event_messages import read_events
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import make_producer
from datastream.run_window import Window
from datastream.schemas import MalformedMessage
from datastream.time_channels import TimeChannels
from liveview.pvs import COUNTERS
from liveview.run_histogram import RunHistogram
from tests.conftest import EPICS_PORTS, free_port, http_get, wait_until
from tests.integration.conftest import read_all, run_simulated_dae

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MS = 1_000_000
NOW_NS = time.time_ns()
I32 = (-(2**31), 2**31 - 1)
I64_MAX = 2**63 - 1
HUGE = 1_000_000  # the longest vector tried: a big frame's worth


def _seeded(test):
    value = os.environ.get("FUZZ_SEED")
    return seed(int(value))(test) if value else test


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, print_blob=True, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


# -- event messages, as data --

def _vector(draw, length: int, values: st.SearchStrategy[int]) -> tuple:
    """A vector as data: short ones element by element, long ones as (fill, n, value)."""
    if length > 64:
        return ("fill", length, draw(values))
    return ("list", *draw(st.lists(values, min_size=length, max_size=length)))


def _array(spec: tuple, dtype: Any) -> np.ndarray:
    # no copy when already of that type: a long vector is 8 MB, made twice a message
    if spec[0] == "fill":
        return np.full(spec[1], spec[2], dtype=np.int64).astype(dtype, copy=False)
    return np.asarray(spec[1:], np.int64).astype(dtype, copy=False)


PIXELS = st.one_of(st.integers(0, 20), st.sampled_from([-1, 0, 17, 2**31 - 1, -(2**31)]),
                   st.integers(*I32))
TOFS = st.one_of(st.integers(0, 100_000_000), st.sampled_from([-1, *I32, 99_999_999]),
                 st.integers(*I32))
PULSES = st.one_of(st.integers(NOW_NS - 3600 * 10**9, NOW_NS),
                   st.sampled_from([0, -1, 1, -(2**63), NOW_NS - 1]))
LENGTHS = st.one_of(st.integers(0, 40), st.sampled_from([1, HUGE]))


@st.composite
def event_fields(draw) -> dict[str, Any]:
    """The fields of one ev44/ev42, mostly plausible, each part mutated on its own."""
    n = draw(LENGTHS)
    pulses = draw(st.integers(0, 4))
    fields: dict[str, Any] = {
        "schema": draw(st.sampled_from(["ev44", "ev44", "ev42"])),
        "source": draw(st.sampled_from(["DAE", "DAE", "DAE", "monitor_1", "", "D" * 300])),
        "message_id": draw(st.integers(0, 2**63 - 1)),
        "tof": _vector(draw, n, TOFS),
        # the pixel ids' own length: mostly n, sometimes not (100,000 events and 1 id)
        "pixel": _vector(draw, draw(st.one_of(st.just(n), LENGTHS)), PIXELS),
        "ref": sorted(draw(st.lists(PULSES, min_size=pulses, max_size=pulses))),
        "period": draw(st.sampled_from([0, 1, 2, 7, 8, -1, 2**31 - 1])),
    }
    index = sorted(draw(st.lists(st.integers(0, n), min_size=pulses, max_size=pulses)))
    if index:
        index[0] = 0
    fields["index"] = draw(st.one_of(
        st.just(index),
        st.lists(st.integers(-5, n + 5), min_size=0, max_size=pulses + 2)))
    fields["bytes"] = draw(st.one_of(
        st.none(), st.none(), st.none(),
        st.tuples(st.just("truncate"), st.integers(0, 400)),
        st.tuples(st.just("flip"), st.integers(0, 400), st.integers(1, 255)),
        st.tuples(st.just("ident"), st.sampled_from([b"ev43", b"\0\0\0\0", b"ev42", b"ev44",
                                                      b"pl72"]))))
    return fields


def build_event(fields: dict[str, Any]) -> bytes:
    """The message of `event_fields`, its byte mutation applied."""
    tof, pixel = _array(fields["tof"], np.int64), _array(fields["pixel"], np.int64)
    if fields["schema"] == "ev44":
        payload = serialise_ev44(fields["source"], fields["message_id"],
                                 np.asarray(fields["ref"], np.int64),
                                 np.asarray(fields["index"], np.int64), tof, pixel)
    else:
        pulse = fields["ref"][0] if fields["ref"] else 0
        payload = serialise_ev42(fields["source"], fields["message_id"], pulse % 2**64,
                                 tof.astype(np.uint32), pixel.astype(np.uint32),
                                 {"period_number": fields["period"] % 2**32, "run_state": 1,
                                  "proton_charge": 1.0})
    change = fields["bytes"]
    if change is None:
        return payload
    if change[0] == "truncate":
        return payload[:change[1]]
    if change[0] == "flip":
        data = bytearray(payload)
        if data:
            data[change[1] % len(data)] ^= change[2]
        return bytes(data)
    return payload[:4] + change[1] + payload[8:]


# -- 0. the fast property: read_events and RunHistogram.add in-process --

CHANNELS = TimeChannels(0, 100_000_000, 10)


@_seeded
@_settings(300)
@given(batch=st.lists(event_fields(), min_size=1, max_size=12),
       logarithmic=st.booleans())
def test_every_message_is_read_or_refused_and_binned_exactly(batch, logarithmic):
    channels = TimeChannels(1000 if logarithmic else 0, 100_000_000, 10, logarithmic)
    hist = RunHistogram(1, 16, channels, max_periods=2)
    hist.reset(Window(-(2**63), None))  # every pulse belongs
    expected_binned = expected_events = 0
    for k, fields in enumerate(batch):
        try:
            ev = read_events(build_event(fields))
        except MalformedMessage:
            continue
        if ev is None:
            continue
        if not len(ev.reference_time):
            assert len(ev.time_of_flight) == 0
            continue
        taken = hist.add(k, ev.reference_time, ev.reference_time_index, ev.time_of_flight,
                         ev.pixel_id, period=ev.period)
        assert taken == len(ev.time_of_flight)
        expected_events += taken
        if 0 <= ev.period < hist.max_periods:
            pix = np.asarray(ev.pixel_id, np.int64)
            tof = np.asarray(ev.time_of_flight, np.int64)
            edges = channels.edges()
            expected_binned += int(((pix >= 1) & (pix <= 16) & (tof >= edges[0])
                                    & (tof < edges[-1])).sum())
    assert hist.events == expected_events
    assert int(hist.counts.sum()) == expected_binned
    assert int(hist.counts.sum()) + hist.outside == hist.events


# -- the live view, running --

class Live:
    """The live view under fuzzing, and clients of it."""

    def __init__(self, kafka, config: InstrumentConfig, http_port: int) -> None:
        self.kafka, self.config, self.http_port = kafka, config, http_port
        self.topics = config.topics
        self.prefix = config.prefix
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fuzzed-liveview")
        self.producer = make_producer(kafka)
        self.failure: BaseException | None = None
        from p4p.client.thread import Context

        self.pva = Context("pva")

    def _run(self) -> None:
        from liveview.service import run

        try:
            run(self.config, self.kafka, EPICS_PORTS, self.stop,
                http=("127.0.0.1", self.http_port))
        except BaseException as exc:  # SystemExit too: said by alive()
            self.failure = exc
            raise

    def alive(self) -> bool:
        names = {t.name for t in threading.enumerate()}
        return (self.thread.is_alive() and "live-consumer" in names and "live-jbi" in names
                and self.failure is None)

    def get(self, name: str) -> Any:
        try:
            return self.pva.get(self.prefix + "LIVE:" + name, timeout=3)
        except Exception:
            return None

    def send(self, topic: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.producer.produce(topic, payload)
        assert self.producer.flush(10) == 0


@pytest.fixture(scope="module")
def live(kafka, tmp_path_factory):
    from launcher.topic_ensure import ensure_topics

    inst = f"FZLV{uuid.uuid4().hex[:4].upper()}"
    config = InstrumentConfig(
        name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path_factory.mktemp("fuzz-live"),
        liveview={"channels": 10, "max_histogram_mb": 64},
        dae={"pixels": 16, "events_per_frame": 40, "frame_rate_hz": 50, "seed": 11})
    ensure_topics(kafka, config.topics)
    view = Live(kafka, config, free_port())
    view.thread.start()
    try:
        wait_until(lambda: view.get("EVENTS") is not None, 60, "the live view's PVs")
        yield view
    finally:
        view.stop.set()
        view.thread.join(30)
        view.pva.close()
    assert not view.thread.is_alive()


def _settle(live: Live, seconds: float = 0.3) -> None:
    time.sleep(seconds)
    assert live.alive(), f"the live view stopped: {live.failure!r}"


# -- 1. runInfo (first: re-reading the events topic at each run it starts is cheap while
# the topic is short) --

TCB_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 1e8, 10e9, 10e9 + 1, 1_000_000, 1_000_001, 1e-300]),
    st.text(max_size=10), st.none(), st.booleans(), st.lists(st.integers(), max_size=3))
TIMES_MS = st.one_of(st.integers(0, 2**64 - 1),
                     st.sampled_from([0, 1, 2**63 // MS, 2**63 // MS + 1, 2**64 - 1,
                                      NOW_NS // MS]))


@st.composite
def run_info_fields(draw) -> dict[str, Any]:
    tcb: Any = {key: draw(TCB_VALUES) for key in
                draw(st.sets(st.sampled_from(["tof_min_ns", "tof_max_ns", "channels",
                                              "logarithmic"])))}
    metadata = draw(st.one_of(
        st.just(json.dumps({"title": "t", "tcb": tcb}, allow_nan=True)),
        st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 50_000)),
        st.text(max_size=50), st.just('{"title": 5, "tcb": []}'),
        st.just('{"tcb": {"tof_min_ns": -Infinity, "tof_max_ns": 1e8, "channels": 10}}')))
    return {
        "kind": draw(st.sampled_from(["pl72", "pl72", "6s4t"])),
        "run_name": draw(st.one_of(st.sampled_from(["00000002", "9" * 100, "", "١٢", "run"]),
                                   st.text(max_size=20))),
        "start": draw(TIMES_MS), "stop": draw(TIMES_MS),
        "metadata": metadata,
        "truncate": draw(st.one_of(st.none(), st.integers(0, 300))),
    }


def build_run_info(fields: dict[str, Any], job: str) -> bytes:
    if fields["kind"] == "pl72":
        payload = serialise_pl72(job, "f.nxs", start_time=fields["start"],
                                 stop_time=fields["stop"], run_name=fields["run_name"],
                                 nexus_structure="{}", metadata=fields["metadata"])
    else:
        payload = serialise_6s4t(job, stop_time=fields["stop"], command_id=job)
    cut = fields["truncate"]
    return payload if cut is None else payload[:cut]


_sentinel = iter(range(10_000_000, 99_999_999))


@_seeded
@_settings(15)
@given(batch=st.lists(run_info_fields(), min_size=1, max_size=4))
def test_no_run_start_or_stop_stops_the_live_view(live, batch):
    job = str(uuid.uuid4())
    payloads = []
    for fields in batch:
        with contextlib.suppress(Exception):  # one the serialiser itself refuses
            payloads.append(build_run_info(fields, job))
    # then a good run: once it shows, every message before it was handled
    number = f"{next(_sentinel):08d}"
    # (from now: a run from long ago would have the live view read every fuzzed event again)
    payloads.append(serialise_pl72(str(uuid.uuid4()), "f.nxs",
                                   start_time=time.time_ns() // MS,
                                   run_name=number, nexus_structure="{}"))
    live.send(live.topics.run_info, payloads)
    wait_until(lambda: live.get("RUNNUMBER") == number or not live.alive(), 20,
               f"run {number} to show")
    _settle(live, 0)


# -- 2. the events topic --

@pytest.fixture(scope="module")
def fuzz_run(live):
    """A run to count the fuzzed events into: from an hour ago, no stop."""
    live.send(live.topics.run_info, [serialise_pl72(
        str(uuid.uuid4()), "fuzz.nxs", start_time=(NOW_NS - 3600 * 10**9) // MS,
        run_name="00000001", nexus_structure="{}")])
    wait_until(lambda: live.get("RUNNUMBER") == "00000001", 30, "the fuzzing's run")


@_seeded
@_settings(25)
@given(batch=st.lists(event_fields(), min_size=1, max_size=6))
def test_no_event_message_stops_the_live_view(live, fuzz_run, batch):
    live.send(live.topics.events, [build_event(f) for f in batch])
    _settle(live, 0.2)


def test_the_fuzzed_events_were_all_read(live):
    time.sleep(1.0)  # a lag check after the last fetch
    wait_until(lambda: live.get("CONSUMERLAG") == 0, 30, "the live view to read them all")
    _settle(live)


# -- 3. the just-bin-it command topic --

JSON_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**200), 2**200),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -1, 0, 2**63, 10**30]))
JSON_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), JSON_NUMBERS, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@st.composite
def jbi_command(draw, events: str, out: str) -> dict[str, Any]:
    """A command's fields as data: a long list as ("range", n), the histograms as one
    histogram and how many times it repeats, deep nesting as a depth (build_command)."""
    hist: dict[str, Any] = {
        "type": draw(st.sampled_from(["hist1d", "hist2d", "dethist", "roihist", "x", 5])),
        "topic": draw(st.sampled_from([out, out, "NOPE", "", 7])),
        "tof_range": draw(st.one_of(st.lists(JSON_NUMBERS, min_size=2, max_size=2),
                                    st.just([0, 100_000_000]), JSON_ANY)),
        "det_range": draw(st.one_of(st.lists(JSON_NUMBERS, min_size=2, max_size=2),
                                    st.just([1, 16]), JSON_ANY)),
        "num_bins": draw(st.one_of(JSON_NUMBERS, st.just(10), st.lists(JSON_NUMBERS,
                                                                       max_size=3))),
        "width": draw(st.one_of(JSON_NUMBERS, st.just(4))),
        "height": draw(st.one_of(JSON_NUMBERS, st.just(4))),
        "left_edges": draw(st.one_of(st.lists(JSON_NUMBERS, max_size=5), st.just([1, 5]),
                                     st.tuples(st.just("range"), st.integers(0, 200_000)))),
        "id": draw(st.text(max_size=10)),
    }
    long_edges = isinstance(hist["left_edges"], tuple)
    command: dict[str, Any] = {
        "cmd": draw(st.sampled_from(["config", "config", "stop", "reset_counts", "x", 3])),
        "msg_id": draw(st.one_of(st.text(max_size=10), JSON_NUMBERS, JSON_ANY)),
        "data_topics": draw(st.sampled_from([[events], [], ["NOPE"], events, None])),
        # repeats of the one histogram: a command stays within a Kafka message (~8 MB)
        "histograms": draw(st.one_of(
            st.tuples(st.just("repeat"), st.integers(0, 3 if long_edges else 80)),
            JSON_ANY)),
    }
    for key in draw(st.sets(st.sampled_from(["start", "stop", "interval"]))):
        command[key] = draw(JSON_NUMBERS)
    return {"hist": hist, "command": command,
            "nesting": draw(st.one_of(st.just(0), st.just(0), st.integers(1, 100_000)))}


def build_command(fields: dict[str, Any]) -> bytes:
    hist = dict(fields["hist"])
    if isinstance(hist["left_edges"], tuple):
        hist["left_edges"] = list(range(hist["left_edges"][1]))
    command = dict(fields["command"])
    if isinstance(command["histograms"], tuple):
        command["histograms"] = [hist] * command["histograms"][1]
    raw = json.dumps(command, allow_nan=True)
    depth = fields["nesting"]
    return ("[" * depth + raw + "]" * depth).encode() if depth else raw.encode()


@pytest.fixture(scope="module")
def jbi_topics(live):
    t = live.topics
    return t.name("liveCommands"), t.name("liveResponses"), t.name("liveHistograms")


@_seeded
@_settings(25)
@given(data=st.data())
def test_no_just_bin_it_command_stops_the_live_view(live, jbi_topics, data):
    commands, responses, out = jbi_topics
    batch = data.draw(st.lists(jbi_command(live.topics.events, out), min_size=1, max_size=4))
    sentinel = uuid.uuid4().hex
    live.send(commands, [*(build_command(f) for f in batch),
                         json.dumps({"cmd": "stop", "msg_id": sentinel}).encode()])
    # answered in order: once the sentinel is, every command before it was handled
    wait_until(lambda: not live.alive() or any(
        json.loads(m.value()).get("msg_id") == sentinel
        for m in read_all(live.kafka, responses, timeout=2)[-20:]), 30, "the answer")
    _settle(live, 0)


# -- 4. PVA setpoints and CA names --

SETPOINTS = ["TCB:TOF_MIN:SP", "TCB:TOF_MAX:SP", "TCB:CHANNELS:SP", "TCB:LOG:SP",
             "IMAGE:TOF_MIN:SP", "IMAGE:TOF_MAX:SP"]
PUT_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -1.0, 0.0, 1.0, 2**63,
                     1_000_000, 1_000_001, 10_000_000.0, 1e-300]),
    st.integers(-(2**63), 2**63 - 1), st.text(max_size=30),
    st.text(min_size=5000, max_size=20_000), st.booleans())


@_seeded
@_settings(40)
@given(name=st.sampled_from(SETPOINTS), value=PUT_VALUES)
def test_no_setpoint_put_stops_the_live_view(live, name, value):
    with contextlib.suppress(Exception):  # refused (the point) or not convertible
        live.pva.put(live.prefix + "LIVE:" + name, value, timeout=5)
    _settle(live, 0.05)


CA_NAMES = ([f"LIVE:{n}" for n in COUNTERS]
            + [f"DAE:{n}" for n in ("NUMSPECTRA", "NUMTIMECHANNELS", "SPECINTEGRALS",
                                    "SPECINTEGRALS.NORD", "SPECDATA", "SPECDATA.NORD",
                                    "SPEC:1:1:X", "SPEC:0:16:YC", "SPEC:1:3:Y.NORD",
                                    "SPEC:2:3:XE.EGU", "SPEC:5:YC")])


@pytest.fixture(scope="module")
def ca(live):
    from caproto.threading.client import Context

    context = Context()
    # the setpoints fuzzed before re-bin the run from its start: its counters go back to 0
    # and climb again for a while, which a test of puts to them would take for a put's doing.
    # Settled is: at the topic's end and the counts unchanged over several lag checks (a
    # re-read can spend seconds on the fuzzed megabyte messages, counting nothing)
    names = ("EVENTS", "MEVENTS", "CONSUMERLAG")
    channels = context.get_pvs(*(live.prefix + f"LIVE:{n}" for n in names), timeout=5)
    for chan in channels:
        chan.wait_for_connection(timeout=10)

    def counts() -> list:
        return [chan.read(timeout=10).data.tolist() for chan in channels]

    seen: list[list] = []
    deadline = time.monotonic() + 90
    while not (len(seen) >= 4 and seen[-1][2] == [0] and all(c == seen[-1] for c in seen[-4:])):
        assert time.monotonic() < deadline, f"the live view never settled: {seen[-4:]}"
        seen.append(counts())
        time.sleep(0.5)
    yield context
    context.disconnect()


@_seeded
@_settings(40)
@given(name=st.sampled_from(CA_NAMES), value=PUT_VALUES)
def test_no_ca_put_writes_or_stops_the_live_view(live, ca, name, value):
    (chan,) = ca.get_pvs(live.prefix + name, timeout=5)
    chan.wait_for_connection(timeout=10)
    before = chan.read(data_type="native", timeout=10).data
    data = value.encode("utf-8", "surrogatepass")[:40] if isinstance(value, str) else [value]
    with contextlib.suppress(Exception):
        # no notify: caproto's client waits out its timeout for the answer to a refused one
        chan.write(data, wait=False)
    time.sleep(0.02)
    after = chan.read(data_type="native", timeout=10).data
    if name.startswith("LIVE:") and name not in ("LIVE:PROCESSINGLAG", "LIVE:COUNTRATE",
                                                 "LIVE:CONSUMERLAG"):
        assert np.array_equal(np.asarray(before), np.asarray(after)), (name, before, after)
    _settle(live, 0)


def test_specdata_proc_stays_writable(live, ca):
    (chan,) = ca.get_pvs(live.prefix + "DAE:SPECDATA.PROC", timeout=5)
    chan.wait_for_connection(timeout=10)
    chan.write([1], wait=True, timeout=10)


# -- 5. the live page --

PARAMS = st.one_of(
    st.text(max_size=30), st.sampled_from(["1e309", "-1", "0", "nan", "inf", "9" * 5000,
                                           "detector:0:0:1e309:1", "detector:-1:0:2:2",
                                           "detector:0:0:3:3", "%00", "1" * 300]),
    st.integers(-(2**80), 2**80).map(str))


@_seeded
@_settings(40)
@given(pixel=st.one_of(st.none(), PARAMS), roi=st.one_of(st.none(), PARAMS),
       period=st.one_of(st.none(), PARAMS))
def test_no_query_is_a_server_error(live, pixel, roi, period):
    from urllib.parse import urlencode

    query = urlencode({k: v for k, v in (("pixel", pixel), ("roi", roi), ("period", period))
                       if v is not None})
    status, body = http_get(f"http://127.0.0.1:{live.http_port}/api/live?{query}")
    assert status in (200, 400), (query[:200], status, body[:300])
    if status == 400:
        assert json.loads(body)["error"]


def test_many_slow_clients_never_starve_the_page(live):
    from liveview.web import MAX_CONNECTIONS, REQUEST_TIMEOUT_S

    slow = []
    try:
        for k in range(MAX_CONNECTIONS + 50):
            sock = socket.create_connection(("127.0.0.1", live.http_port), timeout=5)
            # half a request, trickled: the headers never end
            sock.sendall(b"GET /api/live?pixel=1 HTTP/1.1\r\nHost: x\r\n" if k % 2 else b"G")
            slow.append(sock)
        deadline = time.monotonic() + REQUEST_TIMEOUT_S + 10
        while time.monotonic() < deadline:
            status, _ = http_get(f"http://127.0.0.1:{live.http_port}/api/live?pixel=2")
            if status == 200:
                break
            assert status in (0, 503), status
            time.sleep(0.5)
        else:
            raise AssertionError("the page stayed starved by slow clients")
    finally:
        for sock in slow:
            sock.close()
    _settle(live, 0)


# -- after it all: one normal run counts exactly --

def test_after_the_fuzzing_a_run_counts_exactly(live):
    assert live.alive()
    time.sleep(2)  # the fuzzed events lie before the run's seek (1 s before its start)
    start_ms = time.time_ns() // MS
    job = str(uuid.uuid4())
    tcb = {"tof_min_ns": 0.0, "tof_max_ns": 20_000_000.0, "channels": 10,
           "logarithmic": False}
    live.send(live.topics.run_info, [serialise_pl72(
        job, "run.nxs", start_time=start_ms, run_name="00000099", nexus_structure="{}",
        metadata=json.dumps({"title": "after fuzzing", "tcb": tcb}))])
    wait_until(lambda: live.get("RUNNUMBER") == "00000099", 30, "the run to be followed")
    stop_ms, counters = run_simulated_dae(live.kafka, live.topics, live.config.dae, start_ms)
    live.send(live.topics.run_info, [serialise_6s4t(job, stop_time=stop_ms, command_id=job)])
    assert counters.total_counts > 0
    wait_until(lambda: live.get("EVENTS") == counters.total_counts, 30,
               f"LIVE:EVENTS to reach {counters.total_counts}")
    time.sleep(1)  # and stay there
    assert live.get("EVENTS") == counters.total_counts
    assert live.alive()
