"""Small fakes for unit tests; tests/integration proves the real clients behave alike."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes | None
    timestamp: int | None


@dataclass
class FakeProducer:
    """confluent_kafka.Producer as the code uses it: produce, poll, flush, delivery callbacks."""

    fail_with: str | None = None
    capacity: int | None = None
    sent: list[Sent] = field(default_factory=list)
    _pending: list = field(default_factory=list)

    def produce(self, topic, value, key=None, timestamp=None, on_delivery=None, **_):
        if self.capacity is not None and len(self._pending) >= self.capacity:
            raise BufferError("queue full")
        self.sent.append(Sent(topic, value, key, timestamp))
        self._pending.append(on_delivery)

    def __len__(self):
        return len(self._pending)  # messages not yet delivered, as librdkafka counts them

    def poll(self, timeout=0):
        self._deliver()
        return 0

    def flush(self, timeout=None):
        self._deliver()
        return 0

    def _deliver(self):
        pending, self._pending = self._pending, []
        for callback in pending:
            if callback is not None:
                callback(self.fail_with, None)

    def topics(self, name):
        return [s for s in self.sent if s.topic == name]


class FakePut:
    """A p4p server operation as the live view's setpoints see it: the value put, the
    client (an account on a host), and the answer given."""

    def __init__(self, value, account: str = "tester", peer: str = "127.0.0.1:40000",
                 name: str = "T:LIVE:TEST:SP"):
        self._value, self._account, self._peer, self._name = value, account, peer, name
        self.error, self.ok = None, False

    def value(self):
        return self._value

    def name(self):
        return self._name

    def account(self):
        return self._account

    def peer(self):
        return self._peer

    def done(self, error=None):
        self.error, self.ok = error, error is None
