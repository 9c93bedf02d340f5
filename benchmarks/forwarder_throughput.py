"""Forwarder throughput and latency on real parts (issue: forwarder at ten times its speed).

A real EPICS IOC (pvxslibs) serves N `calc` records, each counting up by one at 10 Hz, so
N x 10 updates/s with every loss countable from the values. The forwarder (its own process,
`datastream forwarder`) sends them to an embedded Kafka broker whose topic stamps each message
with the broker's append time (LogAppendTime). After the run the topic is read back:
  - loss: per PV, the gaps in the counter over the measured window;
  - latency: broker append time minus the EPICS timestamp in the payload (p50 / p99);
  - CPU (share of one core) and peak RSS of the forwarder process;
  - the drops the forwarder counted itself, from its last x5f2 status (whole run).
Reading back after the run keeps the reader off the two cores while measuring.

Reference (issue 5, the ESS forwarder measured on this kind of 2-core machine): over CA it keeps
up to about 3,000 updates/s (84 % of a core, p99 ~ 200 ms) and collapses above ~4,000/s; over
PVA it saturates near 6,000/s; at 1,000/s its p99 latency is ~65 ms.

    .venv/bin/python benchmarks/forwarder_throughput.py [--rates 1000,10000,30000]
        [--protocols ca,pva] [--schemas f142,f144] [--seconds 15] [--metrics off,on]

--metrics off,on runs each case twice, side by side: without /metrics, then with it served
and scraped every second (five times as often as Prometheus's 5 s here), giving the cost of
the metrics to the forwarder and the time a scrape takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil
from common import Sampler, free_port, kafka_broker, pct
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from datastream.epics_network import EpicsPorts
from datastream.kafka_client import KafkaSettings, make_admin, make_consumer
from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from datastream.topics import InstrumentTopics
from launcher.topic_ensure import ensure_topics

PREFIX = "TE:FBENCH:"
TOPICS = InstrumentTopics("FBENCH")
WARMUP_S = 6.0


def write_db(path: Path, n: int) -> None:
    path.write_text("".join(
        f'record(calc, "$(P)C{i}") {{ field(SCAN, ".1 second") field(CALC, "A+1") '
        f'field(INPA, "$(P)C{i}") }}\n' for i in range(n)))


def create_topic(kafka: KafkaSettings, name: str) -> None:
    admin = make_admin(kafka)
    futures = admin.create_topics([NewTopic(name, 1, 1, config={
        "message.timestamp.type": "LogAppendTime"})])
    for future in futures.values():
        future.result(30)


def decode(payload: bytes) -> tuple[int, int]:
    """(counter value, EPICS ns) of an f142 or f144 message."""
    if schema_id(payload) == "f142":
        data = deserialise_f142(payload)
        return int(data.value), data.timestamp_ns
    from streaming_data_types.logdata_f144 import deserialise_f144

    data = deserialise_f144(payload)
    return int(data.value), data.timestamp_unix_ns


def read_back(kafka: KafkaSettings, topic: str, t0_ns: int, t1_ns: int) -> dict[str, object]:
    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: dict[bytes, list[int]] = defaultdict(list)
    latency_ms: list[float] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3:
        batch = consumer.consume(10000, 0.5)
        if not batch:
            continue
        idle_since = time.monotonic()
        for msg in batch:
            if msg.error() or schema_id(msg.value()) not in ("f142", "f144"):
                continue
            value, epics_ns = decode(msg.value())
            if not t0_ns <= epics_ns < t1_ns:
                continue
            values[msg.key()].append(value)
            latency_ms.append(msg.timestamp()[1] - epics_ns / 1e6)
    consumer.close()
    gaps = sum(max(v) - min(v) + 1 - len(set(v)) for v in values.values())
    return {"received": sum(len(v) for v in values.values()), "gaps": gaps, "pvs": len(values),
            "p50_ms": pct(latency_ms, 0.5) if latency_ms else float("nan"),
            "p99_ms": pct(latency_ms, 0.99) if latency_ms else float("nan")}


def counted_drops(kafka: KafkaSettings, since_ms: int) -> int | None:
    """Updates the forwarder says it dropped (EPICS backlog, full producer queue), from the
    last status message after since_ms; None if it sent none."""
    from streaming_data_types.status_x5f2 import deserialise_x5f2

    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(TOPICS.forwarder_status, 0, 0)])
    last = None
    while batch := consumer.consume(1000, 1.0):
        for msg in batch:
            if not msg.error() and msg.timestamp()[1] >= since_ms:
                last = json.loads(deserialise_x5f2(msg.value()).status_json)
    consumer.close()
    return None if last is None else last["dropped_epics_backlog"] + last["dropped_queue_full"]


class Scraper:
    """GET /metrics every second on a thread; keeps how long each took."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.took_ms: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    reply.read()
                self.took_ms.append((time.perf_counter() - t0) * 1000)
            except OSError:
                self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def run_case(kafka: KafkaSettings, work: Path, ports: EpicsPorts, rate: int, protocol: str,
             schema: str, seconds: float, metrics: bool = False) -> dict[str, object]:
    n = max(1, rate // 10)
    topic = f"FBENCH_{protocol}_{schema}_{rate}_{time.monotonic_ns() % 10**6}"
    create_topic(kafka, topic)
    db = work / f"bench{n}.db"
    write_db(db, n)
    streams = work / f"streams_{topic}.json"
    streams.write_text(json.dumps({"streams": [
        {"channel": f"{PREFIX}C{i}", "protocol": protocol, "schema": schema, "topic": topic,
         "periodic": False, "name": f"c{i}"} for i in range(n)]}))
    server_env = os.environ | ports.server_env(ports.sample_env_ca)
    ioc = subprocess.Popen([sys.executable, "-m", "pvxslibs.ioc", "-m", f"P={PREFIX}",
                            "-d", str(db)], env=server_env, stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    started_ms = time.time_ns() // 1_000_000
    fwd_log = open(work / f"forwarder_{topic}.log", "wb")  # noqa: SIM115 (closed below)
    metrics_port = free_port() if metrics else 0
    forwarder = subprocess.Popen(
        [sys.executable, "-m", "launcher", "--log-level", "warning", "forwarder",
         "--instrument", "FBENCH", "--prefix", PREFIX, "--broker", kafka.bootstrap,
         "--streams", str(streams), "--no-run-log", "--no-use-storage",
         "--metrics-port", str(metrics_port)],
        env=os.environ | ports.client_env(), stdout=fwd_log, stderr=subprocess.STDOUT)
    sampler = Sampler({"forwarder": forwarder.pid})
    scraper = None
    try:
        time.sleep(WARMUP_S)
        scraper = Scraper(metrics_port) if metrics else None
        proc = psutil.Process(forwarder.pid)
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.time_ns()
        time.sleep(seconds)
        cpu1, t1 = sum(proc.cpu_times()[:2]), time.time_ns()
        rss_during = sampler.peak_rss
    finally:
        if scraper is not None:
            scraper.stop()
        sampler.stop()
        forwarder.terminate()
        try:
            forwarder.wait(20)
        except subprocess.TimeoutExpired:
            print(f"  (the forwarder did not stop within 20 s of SIGTERM at {rate}/s: killed)",
                  flush=True)
            forwarder.kill()
            forwarder.wait(10)
        fwd_log.close()
        ioc.terminate()
        ioc.wait(10)
        ioc.stdin.close()
    result = read_back(kafka, topic, t0, t1)
    result["counted"] = counted_drops(kafka, started_ms)
    offered = n * 10 * (t1 - t0) / 1e9
    # an update of the window that never arrived is lost, whether or not later ones did
    took = scraper.took_ms if scraper is not None else []
    result.update(metrics=metrics, scrape_p50_ms=pct(took, 0.5) if took else None,
                  scrape_p99_ms=pct(took, 0.99) if took else None,
                  scrapes_failed=scraper.failed if scraper is not None else 0)
    result.update(rate=rate, protocol=protocol, schema=schema, offered=int(offered),
                  lost=max(0, int(offered) - result["received"]),
                  cpu=(cpu1 - cpu0) / ((t1 - t0) / 1e9), rss_mib=rss_during / 2**20,
                  forwarded_per_s=result["received"] / ((t1 - t0) / 1e9))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,10000,30000")
    parser.add_argument("--protocols", default="ca,pva")
    parser.add_argument("--schemas", default="f142,f144")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--broker", help="use this broker instead of an embedded one")
    parser.add_argument("--metrics", default="off",
                        help="off, on, or off,on: each case without and with /metrics "
                        "(scraped every second), side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fbench-") as tmp, \
            kafka_broker(Path(tmp), args.broker) as kafka:
        work = Path(tmp)
        ensure_topics(kafka, TOPICS)
        ports = EpicsPorts(run_control_ca=free_port(), sample_env_ca=free_port(),
                           repeater=free_port(), pva_server=free_port(),
                           pva_broadcast=free_port())
        print(f"{'protocol':8} {'schema':6} {'metrics':7} {'offered/s':>9} {'forwarded/s':>11} "
              f"{'lost':>6} {'gaps':>6} {'counted':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>6} "
              f"{'us/upd':>6} {'RSS MiB':>8} {'scrape ms p50/p99':>17}", flush=True)
        modes = [m == "on" for m in args.metrics.split(",")]
        for protocol in args.protocols.split(","):
            for schema in args.schemas.split(","):
                for rate in (int(r) for r in args.rates.split(",")):
                    for metrics in modes:
                        r = run_case(kafka, work, ports, rate, protocol, schema, args.seconds,
                                     metrics)
                        counted = "?" if r["counted"] is None else r["counted"]
                        cost_us = r["cpu"] * 1e6 / max(r["forwarded_per_s"], 1)
                        scrape = ("-" if r["scrape_p50_ms"] is None else
                                  f"{r['scrape_p50_ms']:.1f}/{r['scrape_p99_ms']:.1f}"
                                  + (f" ({r['scrapes_failed']} failed)"
                                     if r["scrapes_failed"] else ""))
                        print(f"{protocol:8} {schema:6} {'on' if metrics else 'off':7} "
                              f"{rate:9d} {r['forwarded_per_s']:11.0f} {r['lost']:6d} "
                              f"{r['gaps']:6d} {counted:>7} {r['p50_ms']:7.1f} "
                              f"{r['p99_ms']:7.1f} {r['cpu']:6.0%} {cost_us:6.1f} "
                              f"{r['rss_mib']:8.0f} {scrape:>17}", flush=True)
    print("\nlost: offered in the window less received (the window's edges make a few); gaps: "
          "counter values missing between the first and last received of each PV;\ncounted: "
          "updates the forwarder itself reports dropped over the whole run (an IOC that "
          "squashes updates for a slow client does not tell it).")
    print("CPU is the forwarder's share of one core (us/upd: its CPU time per forwarded "
          "update); latency is broker append time minus the EPICS timestamp.")
    print("ESS forwarder on this kind of machine (issue 5): CA ~3,000/s at 84 % of a core, "
          "p99 ~200 ms, collapse above ~4,000/s; PVA saturates near 6,000/s; p99 ~65 ms at "
          "1,000/s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
