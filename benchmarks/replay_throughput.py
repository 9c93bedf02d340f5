"""Replay throughput (issue 21 part 3): how fast `datastream replay --speed 0` streams a run
file into Kafka, beside how fast h5py alone reads the same file's events.

A run file of --events events (default 20 M) in --pulses pulses is made with h5py in this
project's layout (raw_data_1/detector_1_events, int32 ids and ns offsets, uint64 ns pulse
times, 1 Mi-row chunks as the writer makes them, a framelog). Then, on the warm page cache:
  - raw read: event_id and event_time_offset read by h5py in the slices replay reads;
  - serialise only: replay's whole path (read, pu00 + ev44 per pulse in <= 100k chunks)
    into a producer that drops the messages: the ceiling without a broker;
  - replay: into an embedded broker's fresh topics, from the pl72 to the 6s4t delivered
    (every message acknowledged).
Figures: M events/s, and MB/s of event data (8 bytes an event). Goal: >= 20 M events/s.

    .venv/bin/python benchmarks/replay_throughput.py [--events 20000000] [--pulses 1000]
        [--repeat 3] [--dir DIR] [--broker host:port] [--max-lead S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
from common import kafka_broker

from datastream.kafka_client import make_producer
from datastream.time_channels import TimeChannels
from datastream.topics import InstrumentTopics
from launcher.topic_ensure import ensure_topics
from replay.events import CHUNK_EVENTS
from replay.pacing import DEFAULT_MAX_LEAD_S
from replay.producer import Replayer, Window
from replay.run_file import open_run_file
from replay.run_start import RunIdentity

START_ISO = "2024-05-01T10:00:00.000Z"
START_NS = 1_714_557_600_000_000_000
FRAME_NS = 100_000_000
CHUNK_ROWS = 1 << 20


def make_file(path: Path, events: int, pulses: int) -> None:
    """A run of `events` over `pulses` frames (10 Hz), written a block at a time."""
    rng = np.random.default_rng(0)
    per_pulse = np.full(pulses, events // pulses, np.int64)
    per_pulse[: events % pulses] += 1
    index = np.concatenate(([0], np.cumsum(per_pulse)[:-1]))
    with h5py.File(path, "w") as f:
        entry = f.create_group("raw_data_1")
        entry.attrs["NX_class"] = "NXentry"
        entry["start_time"], entry["name"], entry["run_number"] = START_ISO, "BENCH", 1
        g = entry.create_group("detector_1_events")
        g.attrs["NX_class"] = "NXevent_data"
        ids = g.create_dataset("event_id", (events,), np.int32, chunks=(CHUNK_ROWS,))
        tofs = g.create_dataset("event_time_offset", (events,), np.int32,
                                chunks=(CHUNK_ROWS,))
        tofs.attrs["units"] = "ns"
        block = 1 << 22
        for a in range(0, events, block):
            n = min(block, events - a)
            ids[a:a + n] = rng.integers(1, 100_000, n, dtype=np.int32)
            tofs[a:a + n] = rng.integers(0, FRAME_NS, n, dtype=np.int32)
        times = START_NS + FRAME_NS * np.arange(pulses, dtype=np.uint64)
        tz = g.create_dataset("event_time_zero", data=times)
        tz.attrs.update(units="ns", offset="1970-01-01T00:00:00Z")
        g["event_index"] = index
        framelog = entry.create_group("framelog")
        for name, values in (("period_log", np.ones(pulses, np.int32)),
                             ("proton_charge", np.full(pulses, 0.01, np.float32))):
            log = framelog.create_group(name)
            log.attrs["NX_class"] = "NXlog"
            log.create_dataset("time", data=np.arange(pulses) * FRAME_NS / 1e9).attrs.update(
                units="second", start=START_ISO)
            log["value"] = values


def raw_read(path: Path) -> float:
    """Seconds for h5py to read every event id and time offset, in replay's slices."""
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        g = f["raw_data_1/detector_1_events"]
        n = len(g["event_id"])
        for a in range(0, n, CHUNK_EVENTS):
            g["event_id"][a:a + CHUNK_EVENTS]
            g["event_time_offset"][a:a + CHUNK_EVENTS]
    return time.perf_counter() - t0


class DroppingProducer:
    """The producer calls replay makes, each message dropped (delivered at once)."""

    def produce(self, topic, value, key=None, timestamp=0, on_delivery=None) -> None:
        if on_delivery is not None:
            on_delivery(None, None)

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0


def replay_once(path: Path, producer, topics: InstrumentTopics, bootstrap: str,
                max_lead_s: float) -> float:
    replayer = Replayer(producer, topics, "DAE", 0.0, max_lead_s, bootstrap,
                        progress_interval_s=3600)
    t0 = time.perf_counter()
    with open_run_file(path) as run:
        replayer.replay(run, RunIdentity(topics.instrument, 1, str(uuid.uuid4())),
                        time.time_ns() // 1_000_000, Window(), TimeChannels())
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--pulses", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--broker", help="an existing broker instead of an embedded one")
    parser.add_argument("--max-lead", type=float, default=DEFAULT_MAX_LEAD_S,
                        help="replay's --max-lead: a run longer than this (10 pulses a "
                        "second) is held back by it, as the command holds it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        path = work / "BENCH00000001.nxs"
        t0 = time.perf_counter()
        make_file(path, args.events, args.pulses)
        mb = args.events * 8 / 1e6
        print(f"file: {args.events:,} events in {args.pulses:,} pulses "
              f"({args.events // args.pulses:,} a pulse), {path.stat().st_size / 1e6:,.0f} MB, "
              f"made in {time.perf_counter() - t0:.1f} s", flush=True)
        raw_read(path)  # the page cache warm for every measurement alike
        rows: dict[str, list[float]] = {"raw h5py read": [], "replay, serialise only": [],
                                        "replay into Kafka": []}
        with kafka_broker(work, args.broker) as kafka:
            for i in range(args.repeat):
                rows["raw h5py read"].append(raw_read(path))
                rows["replay, serialise only"].append(replay_once(
                    path, DroppingProducer(), InstrumentTopics("DROP"), "none", args.max_lead))
                topics = InstrumentTopics(f"RB{i}{uuid.uuid4().hex[:6].upper()}")
                ensure_topics(kafka, topics)
                # replay's own producer settings (replay.cli); gone before the broker is
                producer = make_producer(kafka, linger_ms=20, batch_size=16 * 1024 * 1024)
                rows["replay into Kafka"].append(replay_once(path, producer, topics,
                                                             kafka.bootstrap, args.max_lead))
                del producer
        print(f"{'':24} {'best s':>8} {'M events/s':>11} {'MB/s':>8}")
        for name, seconds in rows.items():
            best = min(seconds)
            print(f"{name:24} {best:8.2f} {args.events / best / 1e6:11.1f} "
                  f"{mb / best:8.0f}")
        rate = args.events / min(rows["replay into Kafka"]) / 1e6
        print(f"goal >= 20 M events/s into Kafka: {'met' if rate >= 20 else 'NOT met'} "
              f"({rate:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
