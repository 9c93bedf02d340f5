"""What replay sends, through a producer that keeps the messages: the run start first (the
template's structure, the file's metadata), per frame a pu00 and its ev44s under one 8-byte
key, logs as f144 between them by time, the run stop last; every time the file's shifted by
one constant so the run starts at the given instant, every Kafka timestamp the message's."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import deserialise_ev44
from streaming_data_types.logdata_f144 import deserialise_f144
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.run_window import ABORT_PREFIX
from datastream.schemas import schema_id
from datastream.schemas.pu00 import deserialise_pu00
from datastream.time_channels import TimeChannels
from datastream.topics import InstrumentTopics
from launcher.cli import main as cli_main
from replay.errors import ReplayError
from replay.pacing import Pacer
from replay.producer import MAX_EVENTS_PER_MESSAGE, Replayer, Window
from replay.run_file import open_run_file
from replay.run_start import RunIdentity
from tests.unit.test_replay_files import START_NS, isis_file, project_file

MS = 1_000_000
NOW_MS = 1_800_000_000_000
TOPICS = InstrumentTopics("TST")
TCB = TimeChannels(0.0, 100e6, 100)


class KeptProducer:
    """confluent_kafka.Producer's calls that replay makes, each message kept."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes | None, int]] = []

    def produce(self, topic, value, key=None, timestamp=0, on_delivery=None):
        self.messages.append((topic, value, key, timestamp))
        if on_delivery is not None:
            on_delivery(None, None)

    def poll(self, _timeout=0):
        return 0

    def flush(self, _timeout=0):
        return 0

    def of(self, schema: str) -> list[tuple[str, bytes, bytes | None, int]]:
        return [m for m in self.messages if schema_id(m[1]) == schema]


def replay(path, window: Window | None = None, speed=0.0):
    producer = KeptProducer()
    replayer = Replayer(producer, TOPICS, "DAE", speed, 1800.0, "broker:9092",
                        clock=lambda: NOW_MS * MS)
    with open_run_file(path) as run:
        sent = replayer.replay(run, RunIdentity("TST", 42, "job-1"), NOW_MS,
                               window or Window(), TCB)
    return producer, sent


def test_a_run_as_run_control_and_the_dae_send_it(tmp_path):
    want = project_file(tmp_path / "run.nxs")
    producer, sent = replay(tmp_path / "run.nxs")
    first, last = producer.messages[0], producer.messages[-1]
    assert schema_id(first[1]) == "pl72" and schema_id(last[1]) == "6s4t"
    start = deserialise_pl72(first[1])
    assert (first[0], first[3], start.start_time) == (TOPICS.run_info, NOW_MS, NOW_MS)
    assert start.filename == "TST00000042.nxs" and start.run_name == "00000042"
    meta = json.loads(start.metadata)
    assert meta["title"] == "a title" and meta["periods"] == 3 and meta["tcb"]["channels"] == 100
    structure = json.dumps(json.loads(start.nexus_structure))
    for needle in ('"isis_framelog"', '"name": "temp"', '"name": "goodframes"',
                   '"source": "monitor_1"', '"TST_sampleEnv"', '"TST_runLog"'):
        assert needle in structure
    # every time shifted by one constant: the file's start is now
    shift = NOW_MS * MS - START_NS
    pu00 = [deserialise_pu00(m[1]) for m in producer.of("pu00")]
    assert [p.reference_time - shift for p in pu00] == want["times"].tolist()
    assert [(p.period_number, p.vetos) for p in pu00] == [(k % 3, 64 if k == 4 else 0)
                                                          for k in range(6)]
    assert pu00[1].proton_charge == pytest.approx(0.51)
    # each frame: pu00 then its ev44s, one key, the DAE's 8-byte counter
    events = [m for m in producer.messages if m[0] == TOPICS.events]
    keys = [int.from_bytes(m[2], "big") for m in events]
    assert keys == sorted(keys) and set(keys) == set(range(1, 7))
    for topic, value, _, ts in events:
        assert topic == TOPICS.events
        t = (deserialise_pu00(value).reference_time if schema_id(value) == "pu00"
             else int(deserialise_ev44(value).reference_time[0]))
        assert ts == t // MS
    det = [deserialise_ev44(m[1]) for m in producer.of("ev44")
           if deserialise_ev44(m[1]).source_name == "DAE"]
    # the vetoed frame 4 had events: sent; frame 2 empty but good: an empty ev44
    assert len(det) == 6
    for ev, (tof, ids) in zip(det, want["det"], strict=True):
        np.testing.assert_array_equal(ev.time_of_flight, tof)
        np.testing.assert_array_equal(ev.pixel_id, ids)
    logs = [(m[0], deserialise_f144(m[1]), m[3]) for m in producer.of("f144")]
    temps = [(f.timestamp_unix_ns - shift, float(f.value), ts) for topic, f, ts in logs
             if f.source_name == "temp" and topic == TOPICS.sample_env]
    # the value from before the start keeps its time; its Kafka timestamp is the start's
    assert temps == [(START_NS - 1_000_000_000, 290.0, NOW_MS),
                     (START_NS + 250_000_000, 291.0, (START_NS + 250_000_000 + shift) // MS),
                     (START_NS + 350_000_000, 292.5, (START_NS + 350_000_000 + shift) // MS)]
    assert [t for t, f, _ in logs if f.source_name == "goodframes"] == [TOPICS.run_log] * 2
    # messages in time order: each log value among the frames
    order = [m[3] for m in producer.messages[1:-1]]
    assert order == sorted(order)
    stop = deserialise_6s4t(last[1])
    assert stop.job_id == "job-1" and not stop.command_id.startswith(ABORT_PREFIX)
    # end_time 1 s after the start
    assert stop.stop_time == sent.stop_ms == NOW_MS + 1000
    assert sent.events == sum(len(t) for t, _ in want["det"] + want["mon"])


def test_from_and_to_shift_the_window_s_start_to_now(tmp_path):
    want = project_file(tmp_path / "run.nxs")
    producer, sent = replay(tmp_path / "run.nxs", Window(0.1, 0.4))
    pu00 = [deserialise_pu00(m[1]).reference_time for m in producer.of("pu00")]
    lo = START_NS + 100_000_000
    assert [t - NOW_MS * MS for t in pu00] == (want["times"][1:4] - lo).tolist()
    assert sent.stop_ms == NOW_MS + 300


def test_a_large_pulse_goes_in_chunks_of_at_most_100k(tmp_path):
    path = tmp_path / "big.nxs"
    project_file(path)
    n = 2 * MAX_EVENTS_PER_MESSAGE + 5
    with h5py.File(path, "a") as f:
        g = f["raw_data_1/detector_1_events"]
        before = len(g["event_id"])
        for name, dtype in (("event_id", np.int32), ("event_time_offset", np.int32)):
            data = np.concatenate([g[name][()], np.arange(n, dtype=dtype)])
            attrs = dict(g[name].attrs)
            del g[name]
            g.create_dataset(name, data=data).attrs.update(attrs)
        assert g["event_index"][-1] <= before
    producer, _ = replay(path)
    sizes = [len(deserialise_ev44(m[1]).pixel_id) for m in producer.of("ev44")
             if deserialise_ev44(m[1]).source_name == "DAE"]
    assert max(sizes) == MAX_EVENTS_PER_MESSAGE and sum(sizes) == before + n


def test_a_bad_chunk_mid_run_aborts_the_run(tmp_path, monkeypatch):
    isis_file(tmp_path / "isis.nxs")
    with h5py.File(tmp_path / "isis.nxs", "a") as f:
        f["raw_data_1/detector_1_events/event_time_offset"][-1] = np.nan
    producer = KeptProducer()
    replayer = Replayer(producer, TOPICS, "DAE", 0.0, 1800.0, "b", clock=lambda: NOW_MS * MS)
    with open_run_file(tmp_path / "isis.nxs") as run, pytest.raises(ReplayError,
                                                                     match="non-finite"):
        # a pulse a chunk: the bad one is read after others were sent
        monkeypatch.setattr("replay.events.CHUNK_EVENTS", 1)
        replayer.replay(run, RunIdentity("TST", 1, "job"), NOW_MS, Window(), TCB)
    # frames 0-2 went; frame 3 was waiting for a later time to be complete, and pulse 4's
    # events could not be read
    assert len(producer.of("pu00")) == 3
    stop = deserialise_6s4t(producer.messages[-1][1])
    assert stop.command_id.startswith(ABORT_PREFIX)


def test_pacing_at_speed_and_the_lead_bound():
    waited: list[float] = []
    now = [10 * 10**9]
    pacer = Pacer(2.0, 10 * 10**9, 60 * 10**9, waited.append, clock=lambda: now[0])
    assert pacer.due_ns(14 * 10**9) == 12 * 10**9  # 4 s of run at speed 2
    fast = Pacer(0.0, 10 * 10**9, 60 * 10**9, waited.append, clock=lambda: now[0])
    assert fast.due_ns(11 * 10**9) < now[0]  # at once
    assert fast.due_ns(100 * 10**9) == 40 * 10**9  # no further ahead than the lead

    def advance(seconds: float) -> None:
        waited.append(seconds)
        now[0] += round(seconds * 1e9)

    Pacer(1.0, now[0], 60 * 10**9, advance, clock=lambda: now[0]).wait_for(now[0] + 10**9)
    assert sum(waited) == pytest.approx(1.0)


def test_the_command_line_says_what_is_wrong_without_a_traceback(tmp_path, capsys):
    code = cli_main(["replay", str(tmp_path / "missing.nxs"), "--broker", "127.0.0.1:1",
                     "--instrument", "TST"])
    err = capsys.readouterr().err
    assert code == 2 and "no such file" in err and "Traceback" not in err
    code = cli_main(["replay", str(tmp_path / "missing.nxs"), "--broker", "127.0.0.1:1",
                     "--from", "2", "--to", "1"])
    assert code == 2 and "--to 1.0 must be after --from 2.0" in capsys.readouterr().err
