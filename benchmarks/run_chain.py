"""End-to-end figures of the whole chain on this machine, on real parts (issue: a real run).

Starts a private instrument (embedded Kafka, sample-environment IOC, run-control IOC with the
simulated DAE, forwarder, file writer) on free loopback ports and prints:
  1. time from the BEGINRUN put to the file existing, and from the ENDRUN put to SETUP with
     LASTFILE set (p50 / p99 over --runs runs);
  2. events/s carried without loss at increasing DAE rates (file events vs TOTALCOUNTS);
  3. peak RSS of every process (sampled every 0.5 s over the whole benchmark).
Bounded: every wait has a timeout; everything it started is stopped at the end.

    .venv/bin/python benchmarks/run_chain.py [--runs 20] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
from common import Sampler, free_port, pct

from datastream.epics_network import EpicsPorts
from datastream.instrument import InstrumentConfig, load_config, write_config
from datastream.kafka_client import KafkaSettings
from datastream.paths import REPO_ROOT
from launcher.broker import embedded
from launcher.topic_ensure import ensure_topics
from launcher.up import instrument_services


def bench_config(d: Path, events_per_frame: int, rate_hz: float) -> Path:
    return write_config(InstrumentConfig(
        name="BENCH", prefix="TE:BENCH:", data_dir=d, end_timeout_s=120,
        dae={"frame_rate_hz": rate_hz, "events_per_frame": events_per_frame, "pixels": 65536},
        sample_env_db=REPO_ROOT / "db" / "sample_env.db",
        streams_file=REPO_ROOT / "iocBoot" / "DEMO" / "forwarder_streams.json"),
        d / "config.toml")


def dump_run_info(kafka: KafkaSettings, topic: str) -> None:
    """What the run-info topic holds, for the report of a benchmark that got stuck."""
    from confluent_kafka import TopicPartition

    from datastream.kafka_client import make_consumer
    from datastream.schemas import schema_id

    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    while (msg := consumer.poll(1.0)) is not None:
        sid = schema_id(msg.value())
        if sid != "x5f2":
            print(f"  {topic}@{msg.offset()}: {sid} ts {msg.timestamp()[1]}")
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each rate run")
    parser.add_argument("--rates", default="1000,10000,50000,100000,200000",
                        help="events per frame at 10 Hz")
    args = parser.parse_args()

    ports = EpicsPorts(run_control_ca=free_port(), sample_env_ca=free_port(),
                       repeater=free_port(), pva_server=free_port(), pva_broadcast=free_port(),
                       liveview_pva=free_port(), liveview_pva_broadcast=free_port(),
                       liveview_ca=free_port())
    os.environ.update(ports.client_env())
    import epics  # after the environment: libca reads it once

    tmp = Path(tempfile.mkdtemp(prefix="datastream-bench-"))
    broker = embedded.BrokerConfig(tmp / "broker", port=free_port(), controller_port=free_port())
    embedded.start(broker)
    kafka = KafkaSettings(broker.bootstrap)
    config_path = bench_config(tmp, 1000, 10.0)
    config = load_config(config_path)
    ensure_topics(kafka, config.topics, config.topic_table())
    services = {s.name: s for s in instrument_services(config, broker.bootstrap, ports,
                                                       config_path)}
    for s in services.values():
        s.start()
    pids = {n: s.proc.pid for n, s in services.items()}
    pids["kafka-broker"] = embedded.running_pid(broker)
    sampler = Sampler(pids)
    p = "TE:BENCH:"

    def get(pv: str, **kw):
        # use_monitor=False: pyepics' cached monitor value may lag a just-completed put
        return epics.caget(p + pv, timeout=5, use_monitor=False, **kw)

    def wait(cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                dump_run_info(kafka, config.topics.run_info)
                for _ in range(2):
                    print("  PVs:", {pv: get(pv, as_string=True) for pv in (
                        "DAE:RUNSTATE", "DAE:RUNDURATION", "FILEWRITER:STATE",
                        "FILEWRITER:HEARTBEAT_AGE", "FILEWRITER:LASTFILE", "DAE:ERRMSGS")})
                    time.sleep(2)
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.005)

    def idle() -> bool:
        return get("FILEWRITER:STATE", as_string=True) in ("IDLE", "FINISHED")

    try:
        wait(lambda: get("DAE:RUNSTATE", as_string=True) == "SETUP" and idle(), 120,
             "the instrument")
        time.sleep(3)
        begin_to_file, end_to_setup = [], []
        for _ in range(args.runs):
            t0 = time.monotonic()
            epics.caput(p + "DAE:BEGINRUN", 1, wait=True)
            number = get("DAE:IRUNNUMBER")
            path = tmp / f"BENCH{number:08d}.nxs"
            wait(path.exists, 30, str(path))
            begin_to_file.append(time.monotonic() - t0)
            time.sleep(0.5)
            t1 = time.monotonic()
            epics.caput(p + "DAE:ENDRUN", 1, wait=True)
            wait(lambda n=path.name: get("DAE:RUNSTATE", as_string=True) == "SETUP"
                 and get("FILEWRITER:LASTFILE", as_string=True) == n, 60, "SETUP")
            end_to_setup.append(time.monotonic() - t1)
        print(f"\n1. over {args.runs} runs (leeway 1 s: the writer waits that long for late data)")
        print(f"   BEGINRUN put -> file exists : p50 {statistics.median(begin_to_file)*1000:.0f}"
              f" ms, p99 {pct(begin_to_file, 0.99)*1000:.0f} ms")
        print(f"   ENDRUN put -> SETUP+LASTFILE: p50 {statistics.median(end_to_setup)*1000:.0f}"
              f" ms, p99 {pct(end_to_setup, 0.99)*1000:.0f} ms")

        print(f"\n2. events/s without loss, DAE at 10 Hz, {args.seconds:.0f} s runs")
        print(f"   {'events/frame':>12} {'offered ev/s':>13} {'counted':>11} {'in file':>11}"
              f" {'lost':>6} {'ENDRUN->SETUP':>14}")
        for n in [int(x) for x in args.rates.split(",")]:
            bench_config(tmp, n, 10.0)
            services["run-control-ioc"].stop()
            services["run-control-ioc"].start()
            pids["run-control-ioc"] = services["run-control-ioc"].proc.pid  # the sampler reads it
            wait(lambda: get("DAE:RUNSTATE", as_string=True) == "SETUP", 60, "the IOC")
            epics.caput(p + "DAE:BEGINRUN", 1, wait=True)
            number = get("DAE:IRUNNUMBER")
            time.sleep(args.seconds)
            t1 = time.monotonic()
            epics.caput(p + "DAE:ENDRUN", 1, wait=True, timeout=120)
            wait(lambda: get("DAE:RUNSTATE", as_string=True) == "SETUP", 180, "SETUP")
            ended = time.monotonic() - t1
            total = get("DAE:TOTALCOUNTS")
            with h5py.File(tmp / f"BENCH{number:08d}.nxs") as f:
                in_file = len(f["raw_data_1/detector_1_events/event_id"])
            print(f"   {n:>12} {n * 10:>13} {total:>11} {in_file:>11} {total - in_file:>6}"
                  f" {ended:>12.1f} s")
    finally:
        sampler.stop()
        for s in reversed(list(services.values())):
            s.stop()
        embedded.stop(broker)
    print("\n3. peak RSS (process and its children)")
    for name, rss in sorted(sampler.peak.items()):
        print(f"   {name:<18} {rss / 2**20:8.0f} MiB")
    print(f"\n(data in {tmp}; delete it when done)")


if __name__ == "__main__":
    main()
