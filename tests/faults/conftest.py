"""Helpers of the fault suite: a frame source standing in for the DAE, and the checks every
scenario makes of the file it produced."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import deliver, make_producer
from tests.integration.conftest import topics  # noqa: F401 (a fixture of this suite too)

MS = 1_000_000


class FrameSource:
    """Frames of `events` events every `period_ms` on the events topic, stamped now, each
    with distinct event ids, until stopped: what the DAE produced is then known exactly.
    Owns one thread (start()/stop())."""

    def __init__(self, kafka, topic: str, period_ms: int = 20, events: int = 200) -> None:
        self._producer = make_producer(kafka, enable_idempotence=True, acks="all")
        self._topic, self._period, self._events = topic, period_ms, events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frames", daemon=True)
        # frame number -> its time (ns), as sent: the delivery report's own timestamp is not
        # relied on, so a report that carries another (or none) cannot hide a frame
        self.sent: dict[int, int] = {}
        self.delivered: set[int] = set()  # frame numbers acknowledged by the broker
        self.failed = 0
        # delivery reports stamped with another time than the frame's own: librdkafka gives
        # a batch the broker had already written (a retry across a leader change) the
        # batch's LogAppendTime, the newest CreateTime of the batch, for every message in it
        self.restamped = 0

    @property
    def frames(self) -> list[int]:
        """Times (ns) of the frames delivered."""
        return [self.sent[k] for k in sorted(self.delivered)]

    def start(self) -> FrameSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the frame source did not stop"
        assert self._producer.flush(30) == 0

    def _delivered(self, k: int, err, msg) -> None:
        if err is None:
            self.delivered.add(k)
            if msg.timestamp()[1] * MS != self.sent[k]:
                self.restamped += 1
        else:
            self.failed += 1

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            t = time.time_ns() // MS * MS
            ids = np.arange(k * self._events, (k + 1) * self._events, dtype=np.int32)
            self.sent[k] = t
            self._producer.produce(self._topic, serialise_ev44(
                "DAE", k, np.array([t], np.int64), np.array([0], np.int32), ids % 997, ids),
                timestamp=t // MS, on_delivery=lambda err, msg, k=k: self._delivered(k, err, msg))
            self._producer.poll(0)
            k += 1
            self._stop.wait(self._period / 1000)

    def events_between(self, start_ns: int, stop_ns: int) -> int:
        return self._events * len(self.pulses_between(start_ns, stop_ns))

    def pulses_between(self, start_ns: int, stop_ns: int) -> set[int]:
        return {t for t in self.frames if start_ns <= t < stop_ns}

    def explain(self, ids: np.ndarray, start_ns: int, stop_ns: int) -> str:
        """Which frames the file has that were not expected, and which it lacks: the
        evidence a failed count needs."""
        in_file = set((np.unique(ids) // self._events).tolist())
        expected = {k for k in self.delivered if start_ns <= self.sent[k] < stop_ns}

        def show(ks: set[int]) -> str:
            return ", ".join(
                f"{k} (t-start {(self.sent[k] - start_ns) / 1e6:+.0f} ms, "
                f"{'delivered' if k in self.delivered else 'no delivery report'})"
                if k in self.sent else f"{k} (never sent)" for k in sorted(ks)[:20])

        return (f"{len(self.sent)} frames sent, {len(self.delivered)} delivered, "
                f"{self.failed} failed, {self.restamped} restamped; "
                f"in the file, not expected: {show(in_file - expected)}"
                f"; expected, not in the file: {show(expected - in_file)}")


def stop_as_a_dae(frames: FrameSource, producer, topic: str, job_id: str,
                  timeout: float = 10.0) -> int:
    """End a run as the DAE does: no frame at or after the stop (the frames stop first), the
    stop at the next millisecond, then the 6s4t. Returns the stop time (ms)."""
    frames.stop()
    stop_ms = time.time_ns() // MS + 1
    deliver(producer, topic, serialise_6s4t(job_id, command_id=str(uuid.uuid4()),
                                            stop_time=stop_ms), timeout=timeout)
    return stop_ms


def check_events_file(path: Path, expected_events: int, distinct_ids: bool = False,
                      pulses: set[int] | None = None,
                      explain: Callable[[np.ndarray], str] | None = None) -> None:
    """Every event of the run once, no pulse twice, and the file opens in a plain reader.
    distinct_ids: every event had its own id (FrameSource), so none may be there twice.
    explain: says from the file's event ids what differs (FrameSource.explain)."""
    with h5py.File(path, "r") as f:  # plain: not SWMR, no h5clear
        events = f["raw_data_1/detector_1_events"]
        ids = events["event_id"][:]
        tz = events["event_time_zero"][:]
        if distinct_ids:
            assert len(np.unique(ids)) == len(ids), "an event is in the file twice"
        if pulses is not None:
            written = set(tz.tolist())
            assert written == pulses, (sorted(written - pulses), sorted(pulses - written))
        assert len(ids) == expected_events, (
            len(ids), expected_events, explain(ids) if explain else "")
        assert len(np.unique(tz)) == len(tz), "a pulse is in the file twice"
        assert np.all(tz > 0), "a pulse without a time (an extent grown past its data)"
        assert f["raw_data_1/end_time"][()], "no end_time"
