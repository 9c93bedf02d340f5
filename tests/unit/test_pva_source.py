"""The PVA source's handling of what p4p's raw client gives it, with a stand-in for the pvxs
network (tests/integration runs it against a real IOC)."""

import threading
from collections import deque

import numpy as np
from p4p.client.raw import Disconnected
from p4p.nt import NTEnum, NTScalar

from forwarder.pva_source import PvaSource, update_from_pva
from forwarder.update import Connection

TS = {"secondsPastEpoch": 1_800_000_000, "nanoseconds": 5}


def scalar(value, code="d", severity=0, message=""):
    return NTScalar(code).type({"value": value, "timeStamp": TS,
                                "alarm": {"severity": severity, "status": 0,
                                          "message": message}})


class FakeSubscription:
    def __init__(self, items):
        self.items = deque(items)

    def pop(self):
        return self.items.popleft() if self.items else None

    def close(self):
        self.items.clear()


class EagerContext:
    """A network so fast that pvxs calls the handler before monitor() has returned."""

    def __init__(self, items):
        self.items = items

    def monitor(self, channel, handler, request=None):
        handler()  # finds no subscription yet: must not lose the queued updates
        return FakeSubscription(self.items)


def source_with(context):
    updates, connections = [], []
    source = PvaSource(updates.append, lambda ch, state, proto: connections.append(state))
    source._context = context
    source._pop = FakeSubscription.pop
    source._early = threading.Lock()
    source._disconnected, source._finished = Disconnected, type("Finished", (Exception,), {})
    return source, updates, connections


def test_updates_queued_before_monitor_returned_are_forwarded():
    source, updates, connections = source_with(EagerContext([scalar(1.5), scalar(2.5)]))
    source.add(["TE:X:T"])
    assert [u.value for u in updates] == [1.5, 2.5]
    assert connections == [Connection.NEVER_CONNECTED, Connection.CONNECTED]


def test_a_disconnect_is_reported_once_and_the_next_value_reconnects():
    items = [scalar(1.0), Disconnected(), Disconnected(), scalar(2.0)]
    source, updates, connections = source_with(EagerContext(items))
    source.add(["TE:X:T"])
    assert connections == [Connection.NEVER_CONNECTED, Connection.CONNECTED,
                           Connection.DISCONNECTED, Connection.CONNECTED]
    assert len(updates) == 2


def test_values_of_the_normative_types():
    update = update_from_pva("TE:X:T", scalar(3.25, severity=2, message="HIGH"))
    assert update.value == np.float64(3.25) and update.severity == 2
    assert update.message == "HIGH" and update.protocol == "pva"
    assert update.timestamp_ns == 1_800_000_000 * 10**9 + 5
    array = update_from_pva("TE:X:W", scalar(np.arange(4.0), "ad"))
    assert isinstance(array.value, np.ndarray) and list(array.value) == [0, 1, 2, 3]
    enum = NTEnum().type({"value": {"index": 2, "choices": ["a", "b", "c"]}, "timeStamp": TS})
    assert update_from_pva("TE:X:E", enum).value == np.int32(2)
    assert update_from_pva("TE:X:S", scalar("text", "s")).value == "text"
    assert update_from_pva("TE:X:I", scalar(7, "l")).value.dtype == np.int64
