from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastream.kafka_client import KafkaSettings, make_consumer, make_producer
from datastream.topics import InstrumentTopics
from launcher.topic_ensure import ensure_topics

_counter = itertools.count(1)


@pytest.fixture
def topics(kafka: KafkaSettings) -> InstrumentTopics:
    """A fresh instrument's topics on the session's real broker."""
    t = InstrumentTopics(f"IT{next(_counter)}{uuid.uuid4().hex[:4].upper()}")
    ensure_topics(kafka, t)
    return t


def _end_offset(consumer, topic: str, deadline: float) -> int:
    """The partition's end; a topic made a moment ago may not have its leader yet."""
    import time

    from confluent_kafka import KafkaException, TopicPartition

    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_all(kafka: KafkaSettings, topic: str, expect: int | None = None,
             timeout: float = 15.0) -> list:
    """Every message of a topic from its beginning: up to its end when called, or until
    `expect` are there; within `timeout` either way."""
    import time

    from confluent_kafka import TopicPartition

    consumer = make_consumer(kafka)
    out = []
    deadline = time.monotonic() + timeout
    try:
        # the end, not a pause in the fetches: a poll can come back empty while big messages
        # are still on their way
        end = _end_offset(consumer, topic, deadline)
        if expect is None and end <= 0:
            return []
        consumer.assign([TopicPartition(topic, 0, 0)])
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
                if expect is None and msg.offset() >= end - 1:
                    break
            if expect is not None and len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


@contextlib.contextmanager
def writer_process(kafka: KafkaSettings, topics: InstrumentTopics, output_dir: Path,
                   preexec_fn=None, wait_ready: bool = True, extra_args: tuple[str, ...] = (),
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`datastream filewriter` as its own process, ready (heartbeating) on entry unless
    wait_ready is False. The log is appended to: a restarted writer adds to it."""
    from datastream.schemas import schema_id
    from tests.conftest import wait_until

    log = open(output_dir / "writer.log", "ab")  # noqa: SIM115 (closed below)
    writer = subprocess.Popen(
        [sys.executable, "-m", "launcher", "filewriter", "--instrument", topics.instrument,
         "--broker", kafka.bootstrap, "--output-dir", str(output_dir), "--leeway", "0.5",
         "--flush-interval", "0.2", "--group", f"fw-{topics.instrument}", *extra_args],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
        env=os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {}))
    try:
        if wait_ready:
            wait_until(lambda: any(schema_id(m.value()) == "x5f2"
                                   for m in read_all(kafka, topics.run_info, timeout=1)), 60,
                       "the file writer's first heartbeat")
        yield writer
    finally:
        if writer.poll() is None:
            writer.terminate()
            try:
                writer.wait(20)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait(10)
        log.close()


def run_simulated_dae(kafka: KafkaSettings, topics: InstrumentTopics, dae_settings: dict,
                      start_ms: int, seconds: float = 1.0):
    """Count a run with the real SimulatedDae from start_ms for about `seconds`, stopped as run
    control stops it: at the next millisecond, so every frame the DAE made lies before the
    stop. Returns (stop_ms, the DAE's counters), every frame delivered."""
    import time

    from ioc.simulated_dae import DaeSettings, SimulatedDae

    ms = 1_000_000
    dae = SimulatedDae(make_producer(kafka), topics.events, DaeSettings(**dae_settings))
    dae.start()
    try:
        dae.begin(start_ms * ms)
        time.sleep(seconds)
        stop_ms = time.time_ns() // ms + 1
        counters = dae.end(stop_ms * ms)
        assert dae.flush(10) == 0
    finally:
        dae.close()
    return stop_ms, counters


@pytest.fixture
def writer(kafka: KafkaSettings, topics: InstrumentTopics, tmp_path: Path) -> Iterator[Path]:
    """The file writer service in-process on the instrument's topics, writing into a folder
    of its own (yielded), ready once it heartbeats (its job-pool consumer has its
    partition); stopped after the test."""
    import threading

    from datastream.schemas import schema_id
    from filewriter.job import JobSettings
    from filewriter.service import run as run_writer
    from tests.conftest import wait_until

    out = tmp_path / "written"
    out.mkdir()
    stop = threading.Event()
    settings = JobSettings(output_dir=out, lookback_s=10, leeway_s=0.5, flush_interval_s=0.2)
    thread = threading.Thread(target=run_writer, args=(topics.run_info, kafka, settings,
                                                       f"fw-{topics.instrument}", stop))
    thread.start()
    wait_until(lambda: any(schema_id(m.value()) == "x5f2"
                           for m in read_all(kafka, topics.run_info, timeout=1)), 30,
               "the file writer's first heartbeat")
    yield out
    stop.set()
    thread.join(30)


def file_written(kafka: KafkaSettings, topic: str, matches, what: str = "the file written",
                 timeout: float = 60):
    """The first wrdn on `topic` that `matches` (a wrdn -> bool), waited for."""
    from streaming_data_types.finished_writing_wrdn import deserialise_wrdn

    from datastream.schemas import schema_id
    from tests.conftest import wait_until

    return wait_until(lambda: [w for w in (deserialise_wrdn(m.value()) for m in read_all(
        kafka, topic, timeout=1) if schema_id(m.value()) == "wrdn") if matches(w)],
        timeout, what)[0]
