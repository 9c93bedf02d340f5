"""What the benchmark scripts share: free loopback ports, percentiles, a broker, and a
process's peak memory."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

from datastream.kafka_client import KafkaSettings
from launcher.broker import embedded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def kafka_broker(work: Path, external: str | None = None) -> Iterator[KafkaSettings]:
    """The broker at `external`, or an embedded one in work/kafka for the duration."""
    if external:
        yield KafkaSettings(external)
        return
    broker = embedded.BrokerConfig(work / "kafka", port=free_port(),
                                   controller_port=free_port())
    embedded.start(broker)
    try:
        yield KafkaSettings(broker.bootstrap)
    finally:
        embedded.stop(broker)


class Sampler:
    """Peak RSS of processes by name (each with its children: a service may run a child
    IOC), every 0.25 s until stop(). `pids` is read on every sample, so a caller may replace
    the pid of a restarted process in it."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def peak_rss(self) -> int:
        """The peak of the only (or largest) process sampled."""
        return max(self.peak.values(), default=0)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for name, pid in self.pids.items():
                try:
                    proc = psutil.Process(pid)
                    rss = sum(p.memory_info().rss
                              for p in [proc, *proc.children(recursive=True)])
                except psutil.Error:
                    continue  # gone, or restarting
                self.peak[name] = max(self.peak.get(name, 0), rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
