"""The shared metrics endpoints: readiness reasons, the cheap latency histogram, the HTTP
routes."""

from __future__ import annotations

import json

import pytest

from datastream.metrics import Health, LatencyBuckets, MetricsServer, counter, gauge
from tests.conftest import http_get as get


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_needs_a_recent_status_and_a_live_loop():
    clock = Clock()
    health = Health(2.0, clock=clock, stall_s=30)
    assert health.problems() == ["no status sent yet"]
    health.status_sent()
    assert health.problems() == []
    clock.now += 4.5
    assert "last status 4 s ago (every 2 s expected)" in health.problems()[0]
    health.status_sent()
    clock.now += 31
    health.status_sent()
    assert health.healthy() == ["main loop stalled for 36 s"]
    health.tick()
    assert health.problems() == []


def test_a_service_without_status_is_ready_on_its_loop_alone():
    assert Health(None, clock=Clock()).problems() == []


def test_latency_buckets_are_cumulative():
    buckets = LatencyBuckets()
    for seconds in (0.0005, 0.003, 0.003, 20.0):
        buckets.observe(seconds)
    family = buckets.family("x_seconds", "doc")
    values = {s.labels.get("le"): s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert values["0.001"] == 1 and values["0.005"] == 3 and values["10"] == 3
    assert values["+Inf"] == 4


@pytest.fixture
def server():
    health = Health(2.0)

    def collect():
        yield gauge("things", "doc", {("a",): 1.0}, labels=["kind"])
        yield counter("done", "doc", 3)
        raise RuntimeError("a broken metric")  # the others are still served

    srv = MetricsServer(0, "forwarder", "LOQ", health, collect).start()
    yield srv, f"http://127.0.0.1:{srv.port}"
    srv.close()


def test_the_routes(server):
    srv, base = server
    status, text = get(base + "/metrics")
    assert status == 200
    assert 'things{kind="a"} 1.0' in text and "done_total 3.0" in text
    assert 'datastream_service_info{instrument="LOQ",service="forwarder"' in text
    assert "datastream_ready 0.0" in text and "process_cpu_seconds_total" in text
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/readyz") == (503, "no status sent yet\n")
    srv.health.status_sent()
    assert get(base + "/readyz") == (200, "ok\n")
    assert get(base + "/other")[0] == 404


def test_producer_latency_from_librdkafka_statistics():
    from forwarder.metrics import ProducerLatency

    latency = ProducerLatency()
    latency.on_stats(json.dumps({"brokers": {
        "127.0.0.1:9092/bootstrap": {"nodeid": -1, "int_latency": {"p99": 9e9},
                                     "rtt": {"p99": 9e9}},
        "127.0.0.1:9092/1": {"nodeid": 1, "int_latency": {"p99": 2500}, "rtt": {"p99": 800}},
        "127.0.0.1:9094/2": {"nodeid": 2, "int_latency": {"p99": 1200}, "rtt": {"p99": 1500}},
    }}))
    assert (latency.queue_p99_s, latency.rtt_p99_s) == (0.0025, 0.0015)
    latency.on_stats("not json")  # kept as it was
    assert latency.queue_p99_s == 0.0025


def test_idle_clients_never_starve_the_endpoints(server):
    """100 connections that send nothing: the threads stay bounded, each is let go after
    its timeout, and a scrape gets through within a few seconds."""
    import socket
    import threading
    import time

    import datastream.metrics as metrics

    srv, base = server
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(100)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= metrics.MAX_CONNECTIONS + 2
        deadline = time.monotonic() + metrics.REQUEST_TIMEOUT_S + 10
        while True:
            try:
                if get(base + "/healthz")[0] == 200:
                    break
            except OSError:  # refused while every slot is held
                pass
            assert time.monotonic() < deadline, "no scrape got through"
            time.sleep(0.2)
    finally:
        for sock in idle:
            sock.close()
