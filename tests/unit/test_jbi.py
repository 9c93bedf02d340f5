"""The live view's just-bin-it parts without Kafka: commands checked as just-bin-it checks
them, its four histogram types against numpy's own histograms (just-bin-it's bin rules), and
the hs00/hs01 messages with their info JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.histogram_hs00 import deserialise_hs00
from streaming_data_types.histogram_hs01 import deserialise_hs01

from liveview.jbi_commands import CommandError, msg_id_of, parse_command
from liveview.jbi_histograms import make_histogram
from liveview.jbi_session import COUNTING, FINISHED, INITIALISED, JbiSession

MS = 1_000_000


def config(**fields) -> bytes:
    hist = {"type": "hist1d", "tof_range": [0, 1000], "num_bins": 10, "topic": "OUT",
            "id": "h1"}
    hist |= fields.pop("hist", {})
    return json.dumps({"cmd": "config", "msg_id": "m1", "data_brokers": ["localhost:9092"],
                       "data_topics": ["EV"], "histograms": [hist]} | fields).encode()


def test_commands_as_nicos_sends_them():
    c = parse_command(config(interval=5, hist={"type": "hist2d", "det_range": [1, 100]}))
    assert (c.cmd, c.msg_id, c.input_schema, c.output_schema) == ("config", "m1", "ev44",
                                                                   "hs00")
    assert c.window(10_000) == (10_000, 15_000)  # interval: from now, in seconds
    assert c.histograms[0].data_topics == ("EV",)  # old style: topics at the top
    c = parse_command(config(start=1000, stop=2000, output_schema="hs01", input_schema="ev42",
                             hist={"data_topics": ["OTHER"]}))
    assert c.window(99_999) == (1000, 2000) and c.histograms[0].data_topics == ("OTHER",)
    assert parse_command(b'{"cmd": "stop"}').cmd == "stop"
    assert parse_command(b'{"cmd": "reset_counts", "msg_id": 7}').msg_id == "7"
    roi = parse_command(config(hist={"type": "roihist", "width": 4, "left_edges": [1, 11]}))
    assert roi.histograms[0].left_edges == (1, 11)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"cmd": "launch"}', "unknown command type 'launch'"),
    (config(interval=5, start=1), "interval"),
    (config(interval=-1), "positive"),
    (config(start=2000, stop=1000), "stop is before start"),
    (config(output_schema="hs99"), "output_schema"),
    (config(input_schema="ev43"), "input_schema"),
    (config(histograms=[]), "non-empty list of histograms"),
    (config(hist={"type": "hist3d"}), "type 'hist3d'"),
    (config(hist={"tof_range": [5, 1]}), "high above low"),
    (config(hist={"num_bins": 0}), "num_bins"),
    (config(hist={"topic": ""}), "output topic"),
    (config(hist={"type": "dethist"}), "det_range is missing"),
    (config(hist={"type": "dethist", "det_range": [1, 10], "width": 100_000,
                  "height": 100_000}), "more than"),
    (config(hist={"type": "roihist", "width": 2, "left_edges": []}), "left_edges"),
    (config(data_topics=None), "data_topics"),
])
def test_bad_commands_say_why(payload, reason):
    with pytest.raises(CommandError, match=reason):
        parse_command(payload)


def test_a_bad_command_keeps_its_msg_id_for_the_answer():
    assert msg_id_of(config(interval=5, start=1)) == "m1"
    assert msg_id_of(b"garbage") is None


def events(n=5000, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1200, n), rng.integers(0, 130, n)  # some outside every range


def spec(kind, **fields):
    base = {"type": kind, "topic": "OUT"}
    return parse_command(json.dumps({"cmd": "config", "data_topics": ["EV"],
                                     "histograms": [base | fields]}).encode()).histograms[0]


def test_hist1d_and_hist2d_bin_as_numpy():
    tof, det = events()
    h = make_histogram(spec("hist1d", tof_range=[0, 1000], num_bins=7))
    h.add(1, tof, det, "")
    np.testing.assert_array_equal(h.counts, np.histogram(tof, range=(0, 1000), bins=7)[0])
    h = make_histogram(spec("hist1d", tof_range=[0, 1000], num_bins=7, det_range=[10, 20]))
    h.add(1, tof, det, "")
    np.testing.assert_array_equal(h.counts, np.histogram2d(
        tof, det, range=((0, 1000), (10, 20)), bins=7)[0].sum(1))
    h = make_histogram(spec("hist2d", tof_range=[0, 1000], det_range=[5, 100], num_bins=9))
    h.add(1, tof, det, "")
    expected, x_edges, y_edges = np.histogram2d(tof, det, range=((0, 1000), (5, 100)), bins=9)
    np.testing.assert_array_equal(h.counts, expected)
    np.testing.assert_allclose(h.edges()[0][0], x_edges)
    np.testing.assert_allclose(h.edges()[1][0], y_edges)


def test_dethist_lays_out_ids_as_just_bin_it():
    h = make_histogram(spec("dethist", det_range=[1, 12], width=4, height=3))
    h.add(1, np.zeros(5), np.array([1, 2, 5, 12, 13]), "")
    expected = np.zeros((4, 3))
    expected[0, 0] = expected[1, 0] = expected[0, 1] = expected[3, 2] = 1  # 13 is outside
    np.testing.assert_array_equal(h.counts, expected)


def test_roihist_counts_only_its_rows():
    h = make_histogram(spec("roihist", width=3, left_edges=[11, 1]))  # rows in any order
    h.add(1, np.zeros(6), np.array([1, 3, 4, 11, 13, 14]), "")
    np.testing.assert_array_equal(h.counts, [[1, 1], [0, 0], [1, 1]])  # [x][row]


def test_a_source_filter_drops_other_sources():
    h = make_histogram(spec("hist1d", tof_range=[0, 10], num_bins=1, source="mon1"))
    h.add(1, np.array([1.0]), np.array([1]), "det")
    h.add(2, np.array([1.0, 2.0]), np.array([1, 1]), "mon1")
    assert h.total() == 2 and h.last_pulse_time == 2


def test_a_session_counts_its_window_and_reports_as_just_bin_it():
    command = parse_command(config(start=1000, stop=2000, output_schema="hs01"))
    session = JbiSession(command, now_ms=5000)
    first = session.messages(now_ns=1)
    assert json.loads(deserialise_hs01(first[0][1])["info"])["state"] == INITIALISED
    pulses = np.array([500, 1000, 1500], np.int64) * MS  # the first is before the start
    session.add("EV", serialise_ev44("det", 1, pulses, np.array([0, 2, 5]),
                                     np.arange(8) * 100, np.ones(8, np.int32)))
    session.add("EV", serialise_ev42("det", 2, 1999 * MS, np.array([50, 60]),
                                     np.array([1, 1])))
    assert session.events == 8 and session.state == COUNTING
    topic, payload = session.messages(now_ns=2)[0]
    hist = deserialise_hs01(payload)
    info = json.loads(hist["info"])
    assert topic == "OUT" and hist["source"] == "just-bin-it"
    assert info | {"rate": 0} == {"id": "h1", "start": 1000, "stop": 2000, "state": COUNTING,
                                  "last_pulse_time": 1999 * MS, "sum": 8, "diff": 8, "rate": 0}
    np.testing.assert_array_equal(hist["data"], [2, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    session.add("EV", serialise_ev44("det", 3, np.array([2000 * MS]), np.array([0]),
                                     np.array([1]), np.array([1])))  # at the stop: not counted
    assert session.state == FINISHED and session.events == 8
    final = json.loads(deserialise_hs01(session.messages(now_ns=3)[0][1])["info"])
    assert final["state"] == FINISHED and final["sum"] == 8
    assert session.done and session.messages(now_ns=4) == []


def test_a_session_finishes_by_the_clock_and_clears_on_reset():
    session = JbiSession(parse_command(config(interval=1)), now_ms=10_000)
    session.add("EV", serialise_ev44("det", 1, np.array([10_100 * MS]), np.array([0]),
                                     np.array([1]), np.array([1])))
    session.add("EV", b"\0\0\0\0f144 not events")  # another schema: skipped, not an error
    assert session.skipped == 1
    session.clear()
    info = json.loads(deserialise_hs00(session.messages(now_ns=1)[0][1])["info"])
    assert info["sum"] == 0
    session.check_clock(11_000 + 4_999)  # within the leeway: still counting
    assert session.state == COUNTING
    session.check_clock(11_000 + 5_001)
    assert session.state == FINISHED
