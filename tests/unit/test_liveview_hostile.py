"""The live view against hostile input, part by part: event messages whose vectors disagree,
setpoints and TCBs of NaN, infinities and absurd sizes, just-bin-it commands with Infinity
and huge numbers, caputs to its read-only counters, and absurd or slow HTTP clients. Each
was found by review; each test here failed before its fix (the binning kernel one
segfaulted, so it runs in a process of its own)."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.event_messages import read_events
from datastream.run_window import Window
from datastream.schemas import MalformedMessage
from datastream.time_channels import TimeChannels
from liveview.run_follower import decide
from liveview.run_histogram import RunHistogram
from tests.fakes import FakePut

T0 = 1_700_000_000_000_000_000
JOB = "0c8f7a0e-3a57-4ad7-a5a1-2f9b5bb0f0a1"


def ev44(ref=(T0,), index=(0,), tof=(100,), pixel=(1,), source="DAE", message_id=1):
    return serialise_ev44(source, message_id, np.asarray(ref, np.int64),
                          np.asarray(index, np.int32), np.asarray(tof, np.int32),
                          np.asarray(pixel, np.int32))


# -- 1. event messages --

@pytest.mark.parametrize(("fields", "reason"), [
    ({"tof": np.arange(100_000), "pixel": [1]}, "100000 times of flight but 1 pixel ids"),
    ({"tof": [1], "pixel": np.ones(100_000)}, "1 times of flight but 100000 pixel ids"),
    ({"ref": [T0, T0 + 1], "index": [0]}, "2 pulse times but 1 pulse indices"),
    ({"ref": [T0], "index": [0, 0]}, "1 pulse times but 2 pulse indices"),
    ({"ref": [T0, T0 + 1], "index": [0, 5]}, "outside the 1 events"),
    ({"ref": [T0, T0 + 1, T0 + 2], "index": [0, 1, -7], "tof": [1, 2], "pixel": [1, 2]},
     "outside"),
    ({"ref": [T0, T0 + 1, T0 + 2], "index": [0, 2, 1], "tof": [1, 2], "pixel": [1, 2]},
     "backwards"),
    ({"index": [1], "tof": [1, 2], "pixel": [1, 2]}, "starts at event 1, not 0"),
    ({"ref": [], "index": [], "tof": [1], "pixel": [1]}, "no pulse"),
])
def test_event_messages_whose_arrays_disagree_are_malformed(fields, reason):
    with pytest.raises(MalformedMessage, match=reason):
        read_events(ev44(**fields))


def test_ev42_whose_arrays_disagree_is_malformed():
    with pytest.raises(MalformedMessage, match="3 times of flight but 1 pixel ids"):
        read_events(serialise_ev42("DAE", 1, T0, np.array([1, 2, 3]), np.array([1])))
    with pytest.raises(MalformedMessage, match="past 2262"):
        read_events(serialise_ev42("DAE", 1, 2**64 - 1, np.array([1]), np.array([1])))


def test_good_and_empty_event_messages_still_read():
    ev = read_events(ev44(ref=[T0, T0 + 1], index=[0, 2], tof=[1, 2, 3], pixel=[1, 2, 3]))
    assert ev.reference_time_index.tolist() == [0, 2] and len(ev.pixel_id) == 3
    empty = read_events(ev44(ref=[T0], index=[0], tof=[], pixel=[]))
    assert len(empty.time_of_flight) == 0
    assert read_events(ev44(ref=[], index=[], tof=[], pixel=[])).reference_time.size == 0
    # a pulse with no events past the last: index == len(events)
    assert read_events(ev44(ref=[T0, T0 + 1], index=[0, 1], tof=[5], pixel=[1])) is not None


def test_a_message_of_100000_events_and_one_pixel_bins_no_phantom_events():
    """The review's case: before, the kernel read 99,999 pixel ids from memory past the
    array and binned them."""
    hist = RunHistogram(1, 16, TimeChannels(0, 1000, 10))
    hist.reset(Window(0, None))
    payload = ev44(tof=np.full(100_000, 500), pixel=[1])
    with pytest.raises(MalformedMessage):
        ev = read_events(payload)
    # handed to the histogram unread, the arrays are checked there too
    with pytest.raises(MalformedMessage):
        hist.add(1, np.array([T0]), np.array([0]), np.full(100_000, 500, np.int32),
                 np.array([1], np.int32))
    assert hist.counts.sum() == 0 and hist.events == 0
    ev = read_events(ev44(tof=[500, 500, 99_999, -5, 500], pixel=[1, 17, 2, 2, 0]))
    assert hist.add(ev.message_id, ev.reference_time, ev.reference_time_index,
                    ev.time_of_flight, ev.pixel_id) == 5
    # pixels 17 and 0 are outside the 16, times 99,999 and -5 outside the channels
    assert hist.counts.sum() == 1 and hist.outside == 4


KERNEL_SCRIPT = textwrap.dedent("""
    import numpy as np
    from datastream.binning import SparseHistogram, bin_edges, bin_linear
    hist = np.zeros((4, 10), np.uint32)
    pix = np.array([1, 2, 3, 4], np.int32)
    tof = np.array([0, 5, 50, 99], np.int32)
    # bounds the kernels must survive whatever the caller checked: an index from int(NaN)
    # is INT64_MIN
    for low, high in ((-np.inf, 100.0), (0.0, np.inf), (np.nan, 100.0), (0.0, np.nan),
                      (0.0, 1e-300), (-np.inf, np.inf)):
        skipped = bin_linear(hist, pix, tof, 1, low, high, 10)
        sparse = SparseHistogram(4, 10, 1, 0.0, 100.0, capacity=16)
        sparse.tof_min, sparse.tof_max = low, high
        sparse.add(pix, tof)
    assert hist.sum() + 0 <= 4 * 6
    for args in ((hist, pix[:1], tof, 1, 0.0, 100.0, 10), (hist, pix, tof, 1, 0.0, 100.0, 11)):
        try:
            bin_linear(*args)
        except ValueError:
            pass
        else:
            raise AssertionError("bin_linear took arrays that disagree")
    try:
        bin_edges(hist, pix, tof, 1, np.linspace(0, 100, 5))
    except ValueError:
        pass
    else:
        raise AssertionError("bin_edges took edges that do not fit the histogram")
    bin_edges(hist, pix, tof, 1, np.array([0, 10, 5, 20, 1, 30, 2, 40, 3, 50, np.nan]))
    print("ok")
""")


def test_the_kernels_index_only_what_they_checked():
    """Run apart: before the fix, tof_min = -inf made bin_linear write at INT64_MIN (a
    segfault)."""
    done = subprocess.run([sys.executable, "-c", KERNEL_SCRIPT], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# -- 2. time channels and setpoints --

@pytest.mark.parametrize("fields", [
    {"tof_min_ns": -math.inf}, {"tof_min_ns": math.nan}, {"tof_max_ns": math.inf},
    {"tof_max_ns": math.nan}, {"tof_min_ns": -1.0}, {"tof_max_ns": 10e9 + 1},
    {"channels": 0}, {"channels": 1_000_001}, {"channels": 2.5}, {"channels": True},
    {"tof_min_ns": 0.0, "tof_max_ns": 1e-300},  # channels narrower than the arithmetic
    {"logarithmic": True, "tof_min_ns": 0.0},
])
def test_time_channels_refuse_what_no_kernel_can_bin(fields):
    with pytest.raises(ValueError):
        TimeChannels(**({"tof_min_ns": 0.0, "tof_max_ns": 1e8, "channels": 1000} | fields))


def test_time_channels_of_a_real_tcb_are_taken():
    assert TimeChannels(0.0, 10e9, 1_000_000).channels == 1_000_000
    assert TimeChannels(1000.0, 20000.0, 50, True).edges()[0] == pytest.approx(1000.0)


def _arrays():
    from liveview.array_pvs import ArrayPVs

    asked = []
    arrays = ArrayPVs("T:LIVE:", RunHistogram(1, 16, TimeChannels(0, 1e6, 10)), (4, 4),
                      on_tcb=asked.append)
    return arrays, asked


@pytest.mark.parametrize("name", ["TCB:TOF_MIN:SP", "TCB:TOF_MAX:SP", "TCB:CHANNELS:SP",
                                  "TCB:LOG:SP", "IMAGE:TOF_MIN:SP", "IMAGE:TOF_MAX:SP"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 1e300, 2**70,
                                   "abc", "x" * 10_000, None])
def test_every_setpoint_refuses_what_is_not_a_finite_number_in_range(name, value):
    arrays, asked = _arrays()
    pv = arrays.setpoints[name]
    before = list(arrays.tof_range_us)
    put = FakePut(value)
    pv._handler.put(pv, put)
    assert put.error and not put.ok, (name, value)
    assert len(put.error) < 200
    assert asked == [] and arrays.tof_range_us == before


def test_tcb_setpoints_say_why_and_take_good_values():
    arrays, asked = _arrays()
    sp = arrays.setpoints
    for name, value, reason in (("TCB:TOF_MIN:SP", -math.inf, "not a finite number"),
                                ("TCB:TOF_MAX:SP", 2e7, "outside 0 to 1e+07 us"),
                                ("TCB:CHANNELS:SP", 2.5, "whole number"),
                                ("TCB:CHANNELS:SP", 2_000_000, "outside 1 to 1e+06"),
                                ("TCB:LOG:SP", 0.5, "whole number")):
        put = FakePut(value)
        sp[name]._handler.put(sp[name], put)
        assert reason in put.error, (name, put.error)
    assert asked == []
    put = FakePut(2000.0)  # µs
    sp["TCB:TOF_MAX:SP"]._handler.put(sp["TCB:TOF_MAX:SP"], put)
    assert put.ok and asked == [TimeChannels(0, 2e6, 10)]
    put = FakePut(500.0)
    sp["IMAGE:TOF_MIN:SP"]._handler.put(sp["IMAGE:TOF_MIN:SP"], put)
    assert put.ok and arrays.tof_range_us[0] == 500.0


def test_an_unexpected_failure_of_a_put_is_the_puts():
    from liveview.array_pvs import _Setpoint

    def boom(value):
        raise OverflowError("no")

    put = FakePut(1.0)
    _Setpoint(boom, 0, 10).put(SimpleNamespace(post=lambda v: None), put)
    assert "no" in put.error


def _start(metadata: str, start_ms: int = 1000, stop_ms: int = 0) -> bytes:
    return serialise_pl72(JOB, "X.nxs", start_time=start_ms, stop_time=stop_ms,
                          run_name="00000001", nexus_structure="{}", metadata=metadata)


@pytest.mark.parametrize("tcb", [
    '{"tof_min_ns": -Infinity, "tof_max_ns": 1e8, "channels": 10}',
    '{"tof_min_ns": NaN, "tof_max_ns": 1e8, "channels": 10}',
    '{"tof_min_ns": 0, "tof_max_ns": Infinity, "channels": 10}',
    '{"tof_min_ns": 0, "tof_max_ns": 1e8, "channels": 1e300}',
    '{"tof_min_ns": 0, "tof_max_ns": 1e8, "channels": -3}',
    '{"tof_min_ns": 0, "tof_max_ns": 1e30, "channels": 10}',
])
def test_a_runs_tcb_that_no_kernel_can_bin_is_not_taken(tcb):
    run = decide(_start('{"title": "t", "tcb": ' + tcb + "}"), "")
    assert run is not None and run.title == "t" and run.channels is None


@pytest.mark.parametrize(("spectra", "detectors", "n_spectra", "reason"), [
    ([1, 2, 3], [1, 2], 3, "3 spectrum numbers but 2 detector ids"),
    ([1, -5], [1, 2], 2, "negative"),
    ([1, 2], [1, -2], 2, "negative"),
    ([1, 2**31 - 1], [1, 2], 2, "is past"),
    ([1, 2], [7, 7], 2, "detector 7 is in more than one spectrum"),
    ([1, 2], [1, 2], 2**31 - 1, "says 2147483647 spectra"),
    ([], [], 0, "it is empty"),
])
def test_a_runs_malformed_spectrum_map_is_one_a_pixel_and_said(monkeypatch, caplog, spectra,
                                                                 detectors, n_spectra,
                                                                 reason):
    from streaming_data_types.run_start_pl72 import DetectorSpectrumMap

    from datastream.epics_network import EpicsPorts
    from datastream.instrument import InstrumentConfig
    from datastream.kafka_client import KafkaSettings
    from liveview.service import LiveSettings, LiveView

    config = InstrumentConfig(name="X", dae={"pixels": 16}, liveview={"channels": 4})
    view = LiveView(config, KafkaSettings("localhost:1"), LiveSettings.from_config(config),
                    EpicsPorts(liveview_ca=0))
    monkeypatch.setattr(view, "_assign", lambda consumer, from_ms: None)
    run = decide(serialise_pl72(
        JOB, "X.nxs", start_time=1000, run_name="00000001", nexus_structure="{}",
        detector_spectrum_map=DetectorSpectrumMap(np.array(spectra, np.int32),
                                                  np.array(detectors, np.int32), n_spectra)),
        "")
    view._begin(None, run)  # followed: the map is checked here, never raises
    assert view.run_name == "00000001"
    assert not view.spectra.mapped and view.spectra.n_spectra == 16
    assert view.dae.spectra().rows_of(3).tolist() == [2]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(reason in m and "one a pixel" in m for m in said), said


def test_run_info_past_what_the_live_view_can_hold_is_malformed():
    deep = "[" * 100_000 + "]" * 100_000
    assert decide(_start(deep), "").title == ""  # followed, with no title
    with pytest.raises(ValueError, match="past 2262"):
        decide(_start("{}", start_ms=2**64 - 1), "")
    with pytest.raises(ValueError, match="past 2262"):
        decide(_start("{}", stop_ms=2**63), "")
    with pytest.raises(ValueError, match="past 2262"):
        decide(serialise_6s4t(JOB, command_id=JOB, stop_time=2**64 - 1), JOB)
    assert decide(serialise_pl72(JOB, "X.nxs", start_time=1, run_name="١٢",
                                 nexus_structure="{}"), "") is None


def test_a_time_no_calendar_holds_is_shown_as_none():
    from liveview.pvs import _iso

    assert _iso(2**63 - 1) and _iso(10**25) == ""


# -- 3. just-bin-it commands --

def config(**fields) -> bytes:
    hist = {"type": "hist1d", "tof_range": [0, 1000], "num_bins": 10, "topic": "OUT",
            "id": "h1"}
    hist |= fields.pop("hist", {})
    body = {"cmd": "config", "msg_id": "m1", "data_topics": ["EV"], "histograms": [hist]}
    return json.dumps(body | fields).encode()


@pytest.mark.parametrize(("payload", "reason"), [
    (config(start=math.inf), "start must be a time"),
    (config(start=math.nan), "start must be a time"),
    (config(stop=1e300), "stop must be a time"),
    (config(start=10**200), "start must be a time"),
    (config(interval=math.inf), "interval"),
    (config(interval=math.nan), "interval"),
    (config(interval=1e300), "interval"),
    (config(hist={"tof_range": [0, math.inf]}), "tof_range"),
    (config(hist={"tof_range": [-math.inf, 0]}), "tof_range"),
    (config(hist={"tof_range": [math.nan, 1]}), "tof_range"),
    (config(hist={"tof_range": [0, 1e-300]}), "narrower"),
    (config(hist={"type": "hist2d", "det_range": [0, 1e300]}), "det_range"),
    (config(hist={"type": "hist2d", "det_range": [1.2, 1.7]}), "more than one detector"),
    (config(hist={"type": "dethist", "det_range": [1, math.nan]}), "det_range"),
    (config(hist={"num_bins": 10**300}), "num_bins"),
    (config(hist={"num_bins": 8_300_000}), "num_bins"),
    (config(hist={"type": "hist2d", "det_range": [1, 100], "num_bins": [4096, 4096]}),
     "Kafka message"),
    (config(hist={"type": "dethist", "det_range": [1, 9], "width": 10**9, "height": 10**9}),
     "width"),
    (config(hist={"type": "dethist", "det_range": [1, 9], "width": 4000, "height": 4000}),
     "Kafka message"),
    (config(hist={"type": "roihist", "width": 10, "left_edges": [2**40]}), "left_edges"),
    (config(histograms=[{"type": "hist1d", "tof_range": [0, 1], "num_bins": 1,
                         "topic": "OUT"}] * 65), "at most 64"),
    (config(histograms=[{"type": "hist1d", "tof_range": [0, 1e8], "num_bins": 4_000_000,
                         "topic": "OUT"}] * 5), "bins in all"),
    (config(hist={"id": "x" * 10_000}), "at most 256 characters"),
    (config(data_topics=["T"] * 100), "data_topics"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b'{"cmd": "config", "msg_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON"),
    (b"9" * 5000, "not JSON"),
])
def test_a_command_out_of_bounds_is_refused_with_its_reason(payload, reason):
    from liveview.jbi_commands import CommandError, msg_id_of, parse_command

    with pytest.raises(CommandError, match=reason):
        parse_command(payload)
    msg_id_of(payload)  # never raises either


class _Producer:
    def __init__(self):
        self.sent = []

    def produce(self, topic, value):
        self.sent.append((topic, json.loads(value)))

    def poll(self, _):
        return 0

    def list_topics(self, timeout=None):
        raise AssertionError("a refused command never reaches the broker")


def test_the_command_that_ended_the_live_view_is_answered_err():
    """`{"cmd":"config", "start": Infinity}` raised OverflowError in the command thread."""
    from liveview.jbi_service import JbiService, JbiTopics

    service = JbiService(None, JbiTopics("C", "R", "S"), "t")
    service._producer = _Producer()
    service.handle(b'{"cmd": "config", "msg_id": "a", "start": Infinity, '
                   b'"histograms": [{"type": "hist1d", "tof_range": [0, 1], "num_bins": 1, '
                   b'"topic": "OUT"}], "data_topics": ["EV"]}')
    (topic, answer), = service._producer.sent
    assert topic == "R" and answer["msg_id"] == "a" and answer["response"] == "ERR"
    assert "start must be a time" in answer["message"]
    assert service.session is None and service.commands_refused == 1


def test_any_failure_of_a_command_is_answered_and_the_thread_goes_on(monkeypatch):
    from liveview import jbi_service
    from liveview.jbi_service import JbiService, JbiTopics

    def broken(payload):
        raise RuntimeError("a bug")

    monkeypatch.setattr(jbi_service, "parse_command", broken)
    service = JbiService(None, JbiTopics("C", "R", "S"), "t")
    service._producer = _Producer()
    service.handle(b'{"cmd": "stop", "msg_id": 5}')
    (_, answer), = service._producer.sent
    assert answer == {"msg_id": "5", "response": "ERR", "message": "RuntimeError: a bug"}


# -- 4. read-only CA counters --

@pytest.fixture()
def ca_counters():
    from liveview.ca_pvs import CaCounters
    from liveview.dae_ca import DaeSpectra
    from liveview.pvs import COUNTERS
    from tests.conftest import EPICS_PORTS

    hist = RunHistogram(1, 4, TimeChannels(0, 3000, 3))
    hist.reset(Window(0, None))
    prefix = f"T{uuid.uuid4().hex[:6]}:"
    spectra = DaeSpectra(prefix, lambda: hist, 4, 2)
    server = CaCounters(f"{prefix}LIVE:", COUNTERS, EPICS_PORTS.liveview_ca, spectra.pvdb)
    spectra.serve_with(server.submit)
    server.start()
    try:
        yield prefix, server
    finally:
        server.close()


def test_no_client_can_write_the_live_views_ca_channels(ca_counters):
    import epics

    prefix, server = ca_counters
    server.post({"EVENTS": 42, "COUNTRATE": 1.5, "RUNNUMBER": "00000007"})
    get = lambda name, **kw: epics.caget(prefix + name, timeout=5,  # noqa: E731
                                         use_monitor=False, **kw)
    assert get("LIVE:EVENTS") == 42
    for name, forged in (("LIVE:EVENTS", 0), ("LIVE:COUNTRATE", 0.0),
                         ("LIVE:RUNNUMBER", "666"), ("DAE:NUMSPECTRA", 99),
                         ("DAE:SPECINTEGRALS", [9, 9]), ("DAE:SPECDATA", [9]),
                         ("DAE:SPECDATA.NORD", 9), ("DAE:SPEC:1:2:YC", [9.0]),
                         ("DAE:SPEC:1:2:YC.NORD", 9), ("DAE:SPEC:1:2:Y.EGU", "x")):
        pv = epics.PV(prefix + name, auto_monitor=False)
        assert pv.wait_for_connection(5), name
        assert not pv.write_access, name
        before = pv.get(timeout=5, use_monitor=False, as_string=True)
        with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
            pv.put(forged, wait=True, timeout=5)
        with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
            epics.caput(prefix + name, forged, wait=True, timeout=5)
        assert pv.get(timeout=5, use_monitor=False, as_string=True) == before, name
        pv.disconnect()
    assert get("LIVE:EVENTS") == 42 and get("LIVE:RUNNUMBER", as_string=True) == "00000007"
    # the one writable channel: it recomputes SPECDATA
    assert epics.caput(prefix + "DAE:SPECDATA.PROC", 1, wait=True, timeout=10) == 1


def test_a_run_name_no_dbr_string_holds_is_cut(ca_counters):
    import epics

    prefix, server = ca_counters
    server.post({"RUNNUMBER": "1" * 100})
    time.sleep(0.3)
    assert epics.caget(prefix + "LIVE:RUNNUMBER", timeout=5, use_monitor=False,
                       as_string=True) == "1" * 39


# -- 5. the live page's HTTP server --

@pytest.fixture()
def web():
    from liveview.web import WebServer, make_app
    from tests.conftest import free_port

    def state(pixel, roi, period):
        if period is not None and not 1 <= period <= 8:
            raise ValueError(f"period {period}: from 1 to 8")
        return {"pixel": pixel, "log": [math.nan, math.inf, 1.0]}

    server = WebServer(make_app(state), "127.0.0.1", free_port())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("query", [
    "pixel=1e309", "pixel=1e309&roi=a:b&period=-1", "period=-1", "pixel=" + "9" * 5000,
    "roi=" + "x" * 5000, "roi=det:0:0:1e309:1", "period=nan", "pixel=%00",
])
def test_absurd_queries_are_400_with_the_reason(web, query):
    from tests.conftest import http_get

    status, body = http_get(web.url + "api/live?" + query)
    assert status == 400 and json.loads(body)["error"], (query, status, body[:200])


def test_a_value_json_cannot_hold_is_null_not_an_error(web):
    from tests.conftest import http_get

    status, body = http_get(web.url + "api/live?pixel=3")
    assert status == 200 and json.loads(body) == {"pixel": 3, "log": [None, None, 1.0]}


def test_slow_clients_are_closed_and_never_starve_the_page(web):
    from liveview.web import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
    from tests.conftest import http_get

    slow = []
    try:
        for _ in range(MAX_CONNECTIONS + 20):  # more than the server takes at once
            sock = socket.create_connection((web.host, web.port), timeout=5)
            sock.sendall(b"GET /api/live HTTP/1.1\r\nHost: x\r\n")  # and never the end
            slow.append(sock)
        time.sleep(REQUEST_TIMEOUT_S + 1)
        for sock in slow[:5]:  # closed by the server, not left holding a connection
            sock.settimeout(2)
            assert sock.recv(100) == b""
        status, _ = http_get(web.url + "api/live?pixel=1")
        assert status == 200
    finally:
        for sock in slow:
            sock.close()
