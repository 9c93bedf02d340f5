"""Prometheus metrics and health endpoints every service shares: /metrics, /healthz, /readyz.

A service hands over a function that reads its own counters when Prometheus scrapes: nothing
is counted twice and the hot paths (30,000 PV updates/s, millions of events/s) do no extra
work for the metrics.

- /healthz: 200 while the service's main loop has ticked within `stall_s` (a hung service is
  not healthy, whatever its HTTP thread does).
- /readyz: 200 when the broker answered within the last probes, the service's topics are
  there, and its last status went out less than two status intervals ago; otherwise 503 and
  one line per reason.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

import datastream
from datastream.kafka_client import KafkaSettings, make_admin

log = logging.getLogger(__name__)

BROKER_PROBE_S = 5.0
# a probe result older than this is no proof that the broker is there
BROKER_PROBE_STALE_S = 3 * BROKER_PROBE_S


class Health:
    """What /healthz and /readyz answer; the service calls tick() from its main loop and
    status_sent() after each status message."""

    def __init__(self, status_interval_s: float | None, kafka: KafkaSettings | None = None,
                 topics: Iterable[str] = (), stall_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.status_interval_s = status_interval_s
        self.stall_s = stall_s
        self._clock = clock
        self._kafka = kafka
        self._topics = list(topics)
        self._last_tick = clock()
        self.last_status: float | None = None
        self._broker: tuple[float, list[str]] | None = None  # (when, problems)
        self._admin = None  # made once: a new client every probe would reconnect each time
        self._stop = threading.Event()
        self._probe_thread: threading.Thread | None = None

    def tick(self) -> None:
        self._last_tick = self._clock()

    def status_sent(self) -> None:
        self.last_status = self._clock()

    def healthy(self) -> list[str]:
        stalled = self._clock() - self._last_tick
        return [f"main loop stalled for {stalled:.0f} s"] if stalled > self.stall_s else []

    def problems(self) -> list[str]:
        now = self._clock()
        out = self.healthy()
        if self.status_interval_s is None:  # a service without status messages
            pass
        elif self.last_status is None:
            out.append("no status sent yet")
        elif now - self.last_status > 2 * self.status_interval_s:
            out.append(f"last status {now - self.last_status:.0f} s ago "
                       f"(every {self.status_interval_s:g} s expected)")
        if self._kafka is not None:
            if self._broker is None or now - self._broker[0] > BROKER_PROBE_STALE_S:
                out.append(f"broker {self._kafka.bootstrap} not reached recently")
            else:
                out.extend(self._broker[1])
        return out

    def probe_broker(self) -> None:
        """One look at the cluster: reachable, and every topic of this service listed."""
        assert self._kafka is not None
        try:
            if self._admin is None:
                self._admin = make_admin(self._kafka)
            listed = self._admin.list_topics(timeout=BROKER_PROBE_S).topics
        except Exception as exc:
            log.debug("broker probe failed: %s", exc)
            return  # the result ages and readiness fails after BROKER_PROBE_STALE_S
        missing = [t for t in self._topics if t not in listed or listed[t].error is not None]
        self._broker = (self._clock(), [f"topic {t} missing" for t in missing])

    def start(self) -> None:
        if self._kafka is None or self._probe_thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.probe_broker()
                self._stop.wait(BROKER_PROBE_S)

        self._probe_thread = threading.Thread(target=loop, name="broker-probe", daemon=True)
        self._probe_thread.start()

    def close(self) -> None:
        self._stop.set()


class LatencyBuckets:
    """A histogram cheap enough for every PV update: a bisect and two additions, under the
    caller's own lock. Read by the scrape as a Prometheus histogram."""

    BOUNDS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS_S) + 1)
        self.total_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS_S, seconds)] += 1
        self.total_s += seconds

    def copy(self) -> LatencyBuckets:
        copy = LatencyBuckets()
        copy.counts, copy.total_s = list(self.counts), self.total_s
        return copy

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, n in zip((*self.BOUNDS_S, float("inf")), list(self.counts), strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.total_s)


class _Collector:
    """The service's own metrics plus those every service has."""

    def __init__(self, service: str, instrument: str, health: Health,
                 collect: Callable[[], Iterable[Metric]]) -> None:
        self._service = service
        self._instrument = instrument
        self._health = health
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("datastream_service", "the service and its version")
        info.add_metric([], {"service": self._service, "instrument": self._instrument,
                             "version": datastream.__version__})
        yield info
        yield GaugeMetricFamily("datastream_ready", "1 when /readyz answers 200",
                                value=0 if self._health.problems() else 1)
        if self._health.status_interval_s is not None:
            yield GaugeMetricFamily("datastream_status_interval_seconds",
                                    "how often the service sends its status",
                                    value=self._health.status_interval_s)
        if self._health.last_status is not None:
            yield GaugeMetricFamily("datastream_last_status_timestamp_seconds",
                                    "when the service last sent its status (Unix time)",
                                    value=self._health.last_status)
        try:
            yield from self._collect()
        except Exception:  # a metric that cannot be read never breaks the others
            log.exception("collecting %s metrics failed", self._service)


# connections served at once, and how long one may take to send its request: many idle or
# slow clients never starve the service or grow its threads without bound (a scraper whose
# connection is refused meanwhile tries again at its next scrape)
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 5.0


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: this one is closed
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a client that sends nothing is let go

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                problems = health.healthy() if path == "/healthz" else health.problems()
                body = ("\n".join(problems) if problems else "ok") + "\n"
                self._reply(503 if problems else 200, body.encode(), "text/plain")
            else:
                self._reply(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:  # a scrape every few s is no news
            pass

    return Handler


class MetricsServer:
    """The HTTP endpoints on their own thread; start() raises OSError if the port is taken."""

    def __init__(self, port: int, service: str, instrument: str, health: Health,
                 collect: Callable[[], Iterable[Metric]], host: str = "127.0.0.1") -> None:
        self.health = health
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(service, instrument, health, collect))
        self.registry.register(ProcessCollector(registry=None))
        self._server = _BoundedServer((host, port), _handler(self.registry, health))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self.health.start()
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (/healthz, /readyz)",
                 *self._server.server_address[:2])
        return self

    def close(self) -> None:
        self.health.close()
        self._server.shutdown()
        self._server.server_close()


def _family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, doc: str,
            values: dict[tuple[str, ...], float] | float, labels: Iterable[str]) -> Metric:
    if not isinstance(values, dict):
        return kind(name, doc, value=values)
    family = kind(name, doc, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def gauge(name: str, doc: str, values: dict[tuple[str, ...], float] | float,
          labels: Iterable[str] = ()) -> Metric:
    """A gauge from one value, or from label values -> value."""
    return _family(GaugeMetricFamily, name, doc, values, labels)


def counter(name: str, doc: str, values: dict[tuple[str, ...], float] | float,
            labels: Iterable[str] = ()) -> Metric:
    """A counter (exposed as <name>_total) from one value or label values -> value."""
    return _family(CounterMetricFamily, name, doc, values, labels)


def serve_metrics(port: int | None, service: str, instrument: str, health: Health,
                  collect: Callable[[], Iterable[Metric]]) -> MetricsServer | None:
    """The endpoints if a port is given (0: any free port), else None; on the address in
    DATASTREAM_METRICS_HOST (default loopback: open it wider only for the monitoring host)."""
    if port is None:
        return None
    host = os.environ.get("DATASTREAM_METRICS_HOST", "127.0.0.1")
    return MetricsServer(port, service, instrument, health, collect, host=host).start()
