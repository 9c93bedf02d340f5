"""File-writer throughput on real parts (issue: file writer at disk speed).

The events topic of an embedded Kafka broker is filled with ev44 messages first (default
1,000 messages of 100,000 events: 100 M events, 800 MB of event data), each one frame (64
different frames in turn), its events sorted by time of flight as ISIS's DAE sends them
(kafka_event_aggregator's sort_events_by_tof; --unsorted: in random order), then one run
covering all of them is written by `datastream filewriter` in its own process, timed from
the pl72 to the wrdn, and the file is fsynced. In the same run, on the same disk:
  - the disk's own sequential write rate (16 MiB writes of as many bytes as the event data,
    then fsync): the ceiling;
  - a naive writer: a plain consumer that appends each message to h5py datasets as it comes
    (resize and write per message, h5py's default chunks);
  - our writer again, writing what the ICP writes besides the events (issue 20): the
    histogram of every event (isis_histogram: --spectra x 1,000 time channels; 10,000
    spectra, a 40 MB histogram, by default: an ISIS diffractometer's size), the framelog and
    the totals. The goal: at least 90 % of the events-only rate. The histogram is more data
    for the disk: at 100,000 spectra it is 400 MB beside the events' 800 MB.
  - with --baseline REV, the writer of that revision (a git worktree of it) writing the
    events alone, in turn with ours: the issue's "today's events/s" is the writer before
    histogramming was added (b2a6b82); with --baseline-icp, that writer's ICP histogram too
    (an A/B of a change to the histogram's binning).
Figures: events/s, MB/s of event data (8 bytes per event: id and time offset), peak RSS,
the CPU seconds of the writer and of the broker during the run.

    .venv/bin/python benchmarks/filewriter_throughput.py [--events 100000000]
        [--per-message 100000] [--repeat 3] [--dir DIR] [--broker host:port] [--unsorted]
        [--baseline REV [--baseline-icp]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import psutil
from common import Sampler, kafka_broker
from confluent_kafka import TopicPartition
from streaming_data_types.eventdata_ev44 import deserialise_ev44, serialise_ev44
from streaming_data_types.finished_writing_wrdn import deserialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72

from datastream.kafka_client import KafkaSettings, make_consumer, make_producer
from datastream.schemas import schema_id
from datastream.topics import InstrumentTopics
from filewriter.job import JobSettings, data_consumer
from launcher.topic_ensure import ensure_topics

INSTRUMENT = "FWBENCH"
# frames of different events, sent in turn: the same frame in every message would bin into
# the same 100,000 of the histogram's 10 M bins, which the caches hold (measured 2x the
# binning rate of real, different frames)
DISTINCT_FRAMES = 64
FRAME_NS = 100_000_000
MB = 1_000_000


def warm_memory(directory: Path, total_bytes: int) -> None:
    """Take as much page cache as the run's file will, then give it back. A virtual machine
    that returns free memory to its host (as these do: virtio-mem, DAMON) makes each page a
    process takes afresh cost a fault in the host, which the guest sees as the process's own
    time: measured 0.09 s of user CPU for a 30 M-event file right after the disk test, 0.84 s
    a run later. Done before every run of every writer, so each pays for its own work."""
    block = bytes(16 * 1024 * 1024)
    path = directory / "warm.bin"
    with open(path, "wb") as f:
        for _ in range(0, total_bytes, len(block)):
            f.write(block)
    path.unlink()


def disk_rate(directory: Path, total_bytes: int) -> float:
    """Sequential write rate with the fsync included, in MB/s."""
    block = np.random.default_rng(0).integers(0, 255, 16 * 1024 * 1024, np.uint8).tobytes()
    path = directory / "disk-rate.bin"
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        written = 0
        while written < total_bytes:
            written += f.write(block)
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return written / elapsed / MB


def frames(per_message: int, pixels: int, unsorted: bool, n: int = DISTINCT_FRAMES,
           seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(time of flight, pixel id) of `n` different frames, each sorted by time of flight
    unless `unsorted`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tof = rng.integers(0, 100_000_000, per_message, dtype=np.int32)
        ids = rng.integers(1, pixels + 1, per_message, dtype=np.int32)
        if not unsorted:  # the ids go with their times
            order = np.argsort(tof, kind="stable")
            tof, ids = tof[order], ids[order]
        out.append((tof, ids))
    return out


def prefill(kafka: KafkaSettings, topic: str, n_messages: int, per_message: int,
            first_ns: int, pixels: int, unsorted: bool = False) -> float:
    pool = frames(per_message, pixels, unsorted)
    index = np.zeros(1, np.int32)  # ISIS sends a frame a message
    producer = make_producer(kafka, linger_ms=20, batch_size=16 * 1024 * 1024,
                             queue_buffering_max_kbytes=512 * 1024)
    t0 = time.perf_counter()
    for k in range(n_messages):
        t = first_ns + k * FRAME_NS
        times = np.array([t], np.int64)
        tof, ids = pool[k % len(pool)]
        payload = serialise_ev44("DAE", k, times, index, tof, ids)
        while True:
            try:
                producer.produce(topic, payload, timestamp=t // 1_000_000)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    return time.perf_counter() - t0


def end_offset(kafka: KafkaSettings, topic: str) -> int:
    consumer = make_consumer(kafka)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def wait_for(kafka: KafkaSettings, topic: str, sid: str, job_id: str | None,
             timeout: float, offset: int = 0) -> bytes:
    """The first `sid` message on `topic` from `offset` on (of the job, given one)."""
    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, offset)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None or msg.error() or schema_id(msg.value()) != sid:
                continue
            if job_id is None or deserialise_wrdn(msg.value()).job_id == job_id:
                return msg.value()
    finally:
        consumer.close()
    raise TimeoutError(f"no {sid} on {topic} within {timeout} s")


def structure(topics: InstrumentTopics, isis: bool, spectra: int = 10_000) -> dict:
    """The events alone, or with ISIS's histogram, framelog and totals beside them."""
    stream = {"topic": topics.events, "source": "DAE"}
    entry = [{"type": "group", "name": "events", "attributes": {"NX_class": "NXevent_data"},
              "children": [{"module": "ev44", "config": stream}]}]
    if isis:
        channels = {"tof_min_ns": 0, "tof_max_ns": 100_000_000, "channels": 1000,
                    "logarithmic": False}
        entry += [{"module": "isis_totals", "config": stream},
                  {"module": "isis_histogram", "config": stream | {
                      "first_pixel": 1, "pixels": spectra, "time_channels": channels,
                      "max_bytes": 1 << 30}},
                  {"type": "group", "name": "framelog", "attributes": {
                      "NX_class": "NXcollection"},
                   "children": [{"module": "isis_framelog", "config": stream}]}]
    return {"children": [{"type": "group", "name": "entry", "attributes": {
        "NX_class": "NXentry"}, "children": entry}]}


def run_writer(kafka: KafkaSettings, topics: InstrumentTopics, out: Path, start_ns: int,
               stop_ns: int, filename: str, events_expected: int, isis: bool = False,
               spectra: int = 10_000, tree: Path | None = None) -> dict[str, float]:
    """One run written by `datastream filewriter`: this checkout's, or `tree`'s (python -m
    finds the launcher in its working directory first)."""
    log = open(out / "writer.log", "wb")  # noqa: SIM115 (closed below)
    # its own first status, not an earlier writer's: the clock must not start while this
    # one is still importing and compiling (which an earlier x5f2 on the topic let it do)
    since = end_offset(kafka, topics.run_info)
    writer = subprocess.Popen(
        [sys.executable, "-m", "launcher", "filewriter", "--instrument", INSTRUMENT,
         "--broker", kafka.bootstrap, "--output-dir", str(out), "--group", "fwbench"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tree)
    try:
        wait_for(kafka, topics.run_info, "x5f2", None, 120, since)
        warm_memory(out, events_expected * 8 * 5 // 4 + (64 << 20))
        sampler = Sampler({"filewriter": writer.pid})
        broker = broker_process(kafka)
        cpu0 = (psutil.Process(writer.pid).cpu_times(), broker and broker.cpu_times())
        machine0 = psutil.cpu_times()
        job_id = str(uuid.uuid4())
        producer = make_producer(kafka)
        t0 = time.perf_counter()
        producer.produce(topics.run_info, serialise_pl72(
            job_id, filename, start_time=start_ns // 1_000_000,
            stop_time=stop_ns // 1_000_000,
            nexus_structure=json.dumps(structure(topics, isis, spectra)),
            control_topic=topics.run_info))
        producer.flush(10)
        done = deserialise_wrdn(wait_for(kafka, topics.run_info, "wrdn", job_id, 1800))
        t_written = time.perf_counter() - t0
        cpu = {"writer_cpu": _cpu(psutil.Process(writer.pid).cpu_times(), cpu0[0]),
               "broker_cpu": _cpu(broker.cpu_times(), cpu0[1]) if broker else float("nan"),
               "busy": _busy(machine0, psutil.cpu_times())}
        sampler.stop()
        fd = os.open(out / filename, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        t_synced = time.perf_counter() - t0
        if done.error_encountered:
            raise RuntimeError(f"the writer failed: {done.message}")
        with h5py.File(out / filename, "r") as f:
            events = len(f["entry/events/event_id"])
            in_range = np.count_nonzero(f["entry/events/event_id"][:] <= spectra)
            if isis and int(f["entry/detector_1/counts"][...].sum()) != in_range:
                raise RuntimeError("the histogram does not hold every event of its spectra")
        (out / filename).unlink()  # each repeat starts from the same free disk
        return {"events": events, "s": t_written, "s_synced": t_synced,
                "rss_mib": sampler.peak_rss / 2**20} | cpu
    finally:
        writer.terminate()
        writer.wait(30)
        log.close()


@contextlib.contextmanager
def worktree(rev: str | None, where: Path) -> Iterator[Path | None]:
    """A checkout of `rev` (a git worktree, removed after), or None without one."""
    if rev is None:
        yield None
        return
    repo = Path(__file__).resolve().parent.parent
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet",
                    str(where), rev], check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(where)],
                       check=False)


def broker_process(kafka: KafkaSettings) -> psutil.Process | None:
    """The embedded broker's JVM (the one listening at the bootstrap port), for its CPU."""
    port = int(kafka.bootstrap.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def _busy(before, now) -> float:
    """The machine's cores busy between two psutil.cpu_times(), in %: everything but idle
    and waiting for I/O, the kernel's work (copies through sockets and the page cache) too,
    which no process's CPU seconds hold."""
    spent = {k: getattr(now, k) - getattr(before, k) for k in now._fields}
    total = sum(v for k, v in spent.items() if k not in ("guest", "guest_nice"))
    return 100 * (1 - (spent["idle"] + spent.get("iowait", 0.0)) / total) if total else 0.0


def _cpu(now, before) -> float:
    return (now.user + now.system) - (before.user + before.system)


def read_only(kafka: KafkaSettings, topic: str, n_messages: int) -> float:
    """Read the topic as the writer does, without writing anything, in MB/s: the ceiling
    the broker and the client set."""
    consumer = data_consumer(kafka, JobSettings.max_queued_mb)
    consumer.assign([TopicPartition(topic, 0, 0)])
    t0 = time.perf_counter()
    got = size = 0
    while got < n_messages:
        for msg in (consumer.consume(num_messages=500, timeout=0)
                    or consumer.consume(num_messages=1, timeout=1)):
            got += 1
            size += len(msg.value())
    elapsed = time.perf_counter() - t0
    consumer.close()
    return size / elapsed / MB


def naive(kafka: KafkaSettings, topic: str, out: Path, n_messages: int) -> dict[str, float]:
    """Append every message as it comes: what a first h5py writer would do."""
    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    path = out / "NAIVE.h5"
    t0 = time.perf_counter()
    events = 0
    with h5py.File(path, "w") as f:
        dsets = {name: f.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=True)
                 for name, dtype in (("event_id", "i4"), ("event_time_offset", "i4"),
                                     ("event_time_zero", "u8"), ("event_index", "i8"))}
        for _ in range(n_messages):
            msg = None
            while msg is None or msg.error():
                msg = consumer.poll(5)
            ev = deserialise_ev44(msg.value())
            for name, data in (("event_id", ev.pixel_id), ("event_time_offset",
                                                          ev.time_of_flight),
                               ("event_time_zero", ev.reference_time),
                               ("event_index", ev.reference_time_index + events)):
                dset = dsets[name]
                old = dset.shape[0]
                dset.resize(old + len(data), axis=0)
                dset[old:] = data
            events += len(ev.pixel_id)
    t_written = time.perf_counter() - t0
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    consumer.close()
    return {"events": events, "s": t_written, "s_synced": time.perf_counter() - t0}


def _rate(run: dict[str, float]) -> float:
    return run["events"] / run["s"]


def _median_rate(runs: list[dict[str, float]]) -> float:
    return sorted(_rate(r) for r in runs)[len(runs) // 2]


def _print_paired(against: str, bases: list[dict[str, float]],
                  isis: list[dict[str, float]]) -> None:
    """Each ICP run against the run beside it in the same round: a slow spell of the machine
    falls on both of a pair, so their ratio spreads less than the medians'."""
    paired = sorted(_rate(i) / _rate(b) for b, i in zip(bases, isis, strict=True))
    print(f"  run by run (each ICP run / {against}): median "
          f"{100 * paired[len(paired) // 2]:.0f} %, "
          f"{', '.join(f'{100 * r:.0f}' for r in paired)} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--per-message", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of our writer")
    parser.add_argument("--spectra", type=int, default=10_000,
                        help="spectra of the ICP's histogram (x 1,000 time channels)")
    parser.add_argument("--dir", type=Path, help="where files go (default: a temporary dir)")
    parser.add_argument("--broker", help="use this broker instead of an embedded one")
    parser.add_argument("--unsorted", action="store_true",
                        help="each frame's events in random order, not by time of flight")
    parser.add_argument("--baseline", metavar="REV",
                        help="also the events alone by this revision's writer (e.g. b2a6b82, "
                             "the writer before the ICP's histogram)")
    parser.add_argument("--baseline-icp", action="store_true",
                        help="the --baseline revision's writer with the ICP's histogram too")
    args = parser.parse_args()
    n_messages = args.events // args.per_message
    with tempfile.TemporaryDirectory(prefix="fwbench-", dir=args.dir) as tmp, \
            kafka_broker(Path(tmp), args.broker) as kafka, \
            worktree(args.baseline, Path(tmp) / "baseline") as tree:
        work = Path(tmp)
        out = work / "files"
        out.mkdir()
        topics = InstrumentTopics(INSTRUMENT)
        ensure_topics(kafka, topics)
        total = n_messages * args.per_message
        # the ceiling: the same number of bytes as the file's event data, written and synced
        ceiling = disk_rate(work, total * 8)
        print(f"disk: sequential write with fsync, {total * 8 / MB:.0f} MB: {ceiling:.0f} MB/s"
              f" (2 GB: {disk_rate(work, 2 * 1024**3):.0f} MB/s)", flush=True)
        first_ns = time.time_ns() - n_messages * FRAME_NS - 60 * 10**9
        took = prefill(kafka, topics.events, n_messages, args.per_message, first_ns,
                       args.spectra, args.unsorted)
        print(f"prefill: {n_messages} ev44 messages, {total / 1e6:.0f} M events "
              f"({'unsorted' if args.unsorted else 'sorted by time of flight'}) in "
              f"{took:.1f} s", flush=True)
        # the broker does not fsync: its log would still be written back while the writer
        # runs, which a broker on its own machine (as in production) does not do to it
        os.sync()
        # the first read after a broker starts costs it three times the CPU of later ones
        # (the JVM compiling its fetch path): read once before timing anything
        read_only(kafka, topics.events, n_messages)
        print(f"kafka: reading the topic without writing: "
              f"{read_only(kafka, topics.events, n_messages):.0f} MB/s", flush=True)
        stop_ns = first_ns + n_messages * FRAME_NS
        # the same run written several times: the spread is part of the figure
        # alternately, so a busy spell of the machine falls on both
        ours, isis, before, before_icp = [], [], [], []
        for k in range(args.repeat):
            ours.append(run_writer(kafka, topics, out, first_ns, stop_ns, f"BENCH{k}.nxs",
                                   total))
            isis.append(run_writer(kafka, topics, out, first_ns, stop_ns, f"ICP{k}.nxs",
                                   total, isis=True, spectra=args.spectra))
            if tree is not None:
                before.append(run_writer(kafka, topics, out, first_ns, stop_ns,
                                         f"BASE{k}.nxs", total, tree=tree))
                if args.baseline_icp:
                    before_icp.append(run_writer(kafka, topics, out, first_ns, stop_ns,
                                                 f"BASEICP{k}.nxs", total, isis=True,
                                                 spectra=args.spectra, tree=tree))
        baseline = naive(kafka, topics.events, out, n_messages)
        print(f"\n{'writer':22} {'events':>11} {'s':>7} {'M events/s':>10} {'MB/s':>7} "
              f"{'MB/s synced':>11} {'% of disk':>9} {'RSS MiB':>8} {'CPU s':>6} "
              f"{'broker':>6} {'busy %':>6}")
        rows = ([("datastream filewriter", r) for r in ours]
                + [(f"  + ICP histogram {args.spectra // 1000}k", r) for r in isis]
                + [(f"writer at {args.baseline}"[:22], r) for r in before]
                + [(f"  + ICP at {args.baseline}"[:22], r) for r in before_icp]
                + [("naive h5py append", baseline)])
        for name, r in rows:
            mb = r["events"] * 8 / MB
            print(f"{name:22} {r['events']:11d} {r['s']:7.1f} {r['events'] / r['s'] / 1e6:10.1f} "
                  f"{mb / r['s']:7.0f} {mb / r['s_synced']:11.0f} "
                  f"{100 * mb / r['s_synced'] / ceiling:9.0f} "
                  f"{r.get('rss_mib', float('nan')):8.0f} "
                  f"{r.get('writer_cpu', float('nan')):6.1f} "
                  f"{r.get('broker_cpu', float('nan')):6.1f} "
                  f"{r.get('busy', float('nan')):6.0f}")
        synced = sorted(r["events"] * 8 / MB / r["s_synced"] for r in ours)
        median = synced[len(synced) // 2]
        print(f"\nmedian of {len(ours)} runs: {median:.0f} MB/s synced, "
              f"{100 * median / ceiling:.0f} % of the disk's {ceiling:.0f} MB/s")
        with_icp, alone = _median_rate(isis), _median_rate(ours)
        print(f"with the ICP's histogram, framelog and totals: {with_icp / 1e6:.1f} M events/s,"
              f" {100 * with_icp / alone:.0f} % of the events alone ({alone / 1e6:.1f} M/s; "
              "goal: 90 %)")
        _print_paired("the events-alone run before it", ours, isis)
        if before:
            then = _median_rate(before)
            print(f"  and {100 * with_icp / then:.0f} % of the events alone by the writer at "
                  f"{args.baseline} ({then / 1e6:.1f} M/s)")
            _print_paired(f"the run at {args.baseline} after it", before, isis)
        if before_icp:
            print(f"the ICP's histogram by the writer at {args.baseline}: "
                  f"{_median_rate(before_icp) / 1e6:.1f} M events/s")
        for r in ours + isis + before + before_icp:
            if r["events"] != total:
                print(f"WARNING: the file holds {r['events']} events, {total} were sent")
    print("\nTimes run from the pl72 to the wrdn (naive: first message to close); 'synced' "
          "adds the fsync of the file. CPU s: the writer's process, broker: the broker's, "
          "from the pl72 to the wrdn; busy %: the machine's cores, the kernel's work too."
          "\nTarget (issue 4): 80 % of the disk's sequential rate "
          "with RSS under 1 GB.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
