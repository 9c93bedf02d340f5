"""The file writer's consumers made ahead of time (filewriter.warm_consumer), with a small
fake consumer: the real ones are exercised by every file-writer test on the broker."""

from __future__ import annotations

import threading
import time

from filewriter.warm_consumer import WarmConsumer


class FakeConsumer:
    made = 0

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        FakeConsumer.made += 1
        self.number = FakeConsumer.made
        self.fail = fail
        self.gate = gate
        self.asked = False
        self.closed = False

    def list_topics(self, timeout: float) -> object:
        if self.gate is not None:
            self.gate.wait(timeout)
        if self.fail:
            raise RuntimeError("broker away")
        self.asked = True
        return object()

    def close(self) -> None:
        self.closed = True


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_job_takes_the_consumer_connected_ahead_and_the_next_is_made():
    made: list[FakeConsumer] = []
    warm = WarmConsumer(lambda: made.append(FakeConsumer()) or made[-1], "data")
    warm.refill()
    _wait(lambda: made and made[0].asked and warm._ready is not None)
    first = warm.take()
    assert first is made[0] and first.asked  # connected before the job asked for it
    _wait(lambda: len(made) == 2 and warm._ready is made[1])  # the next job's, meanwhile
    assert warm.take() is made[1]
    warm.close()


def test_with_none_ready_the_job_makes_its_own_and_a_failed_one_is_closed():
    made: list[FakeConsumer] = []
    warm = WarmConsumer(lambda: made.append(FakeConsumer(fail=True)) or made[-1], "control")
    warm.refill()
    _wait(lambda: made and made[0].closed)  # the broker was away: given up, closed
    own = warm.take()  # nothing ready: a new one, not connected ahead
    assert own is made[1] and not own.asked and not own.closed
    warm.close()


def test_close_closes_the_ready_one_and_one_still_being_made():
    gate = threading.Event()
    made: list[FakeConsumer] = []
    warm = WarmConsumer(lambda: made.append(FakeConsumer(gate=gate)) or made[-1], "data")
    warm.refill()
    _wait(lambda: len(made) == 1)
    warm.close()  # while its thread still waits for the broker
    gate.set()
    _wait(lambda: made[0].closed)
    warm.refill()  # closed: no more are made
    time.sleep(0.05)
    assert len(made) == 1
