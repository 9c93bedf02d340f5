"""What the benchmark scripts share: free loopback ports, percentiles, a broker, and a
process's peak memory."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

from datastream.broker import embedded
from datastream.kafka_client import KafkaSettings


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
    """Peak RSS of a process, every 0.25 s."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
