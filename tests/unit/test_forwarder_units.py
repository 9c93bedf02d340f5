"""un00 (ISIS's units schema) from the forwarder: once per connection, again when the units
change, before the value they label, on every stream's topic (issue 20). With small fakes for
the broker and the EPICS clients; tests/integration has the real IOC."""

from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace

import numpy as np
from caproto import ChannelType, EventAddResponse
from caproto._dbr import DBR_TYPES
from p4p.client.raw import Disconnected
from p4p.nt import NTEnum, NTScalar

from datastream.schemas import schema_id
from datastream.schemas.un00 import deserialise_un00
from datastream.streams import Stream
from forwarder.ca_source import CaSource, _time_types, _units_offsets
from forwarder.forwarding import UNITS_WAIT_NS, Forwarding
from forwarder.publisher import Publisher
from forwarder.pva_source import PvaSource
from forwarder.update import Connection, Update
from tests.fakes import FakeProducer

NOW = 1_800_000_000_000_000_000
PV = "TE:X:TEMP"
F144 = Stream(PV, "ca", "f144", "X_sampleEnv")


class Clock:
    def __init__(self) -> None:
        self.ns = NOW

    def __call__(self) -> int:
        return self.ns


def make(streams: list[Stream]) -> tuple[Forwarding, FakeProducer, Clock]:
    producer, clock = FakeProducer(), Clock()
    return (Forwarding(streams, Publisher(producer), "svc", clock_ns=clock, units_reported=True),
            producer, clock)


def sent(producer: FakeProducer, *schemas: str) -> list:
    """What went out, as (schema, topic) in order: ep01 left out unless asked for."""
    wanted = schemas or ("f144", "f142", "un00", "al00")
    return [(schema_id(s.value), s.topic) for s in producer.sent
            if schema_id(s.value) in wanted]


def units_sent(producer: FakeProducer) -> list:
    return [deserialise_un00(s.value) for s in producer.sent if schema_id(s.value) == "un00"]


def value(i: float, ts: int = NOW, protocol: str = "ca") -> Update:
    return Update(PV, np.float64(i), ts, protocol=protocol)


def test_units_at_connect_go_once_before_the_first_value_then_again_only_when_changed():
    fwd, producer, _ = make([F144])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_units(PV, "K")
    fwd.on_update(value(1, NOW - 3_000_000))
    assert sent(producer) == [("un00", "X_sampleEnv"), ("f144", "X_sampleEnv"),
                              ("al00", "X_sampleEnv")]
    (un00,) = units_sent(producer)
    assert (un00.source_name, un00.units, un00.timestamp_ns) == (PV, "K", NOW - 3_000_000)
    first = next(s for s in producer.sent if schema_id(s.value) == "un00")
    assert first.key == PV.encode() and first.timestamp == (NOW - 3_000_000) // 1_000_000

    fwd.on_units(PV, "K")  # a property change of something else (HOPR, PREC, ...)
    for i in range(3):
        fwd.on_update(value(2 + i, NOW + i))
    assert len(units_sent(producer)) == 1

    fwd.on_units(PV, "mK")  # CA: a changed EGU alone, stamped with the value it now labels
    fwd.on_update(value(9, NOW + 10))
    assert [u.units for u in units_sent(producer)] == ["K", "mK"]
    assert units_sent(producer)[1].timestamp_ns == NOW + 2
    assert [s for s, _ in sent(producer, "un00", "f144")][-2:] == ["un00", "f144"]
    assert fwd.counters().units_sent == 2


def test_values_arriving_before_the_units_wait_for_them():
    """CA's values and units come on two subscriptions, in either order."""
    fwd, producer, _ = make([F144])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_update(value(1, NOW))
    fwd.on_update(value(2, NOW + 1))
    assert sent(producer) == []
    fwd.on_units(PV, "K")
    assert sent(producer, "un00", "f144") == [("un00", "X_sampleEnv"), ("f144", "X_sampleEnv"),
                                              ("f144", "X_sampleEnv")]
    assert units_sent(producer)[0].timestamp_ns == NOW  # the first value's time
    counters = fwd.counters()
    assert (counters.updates, counters.forwarded, counters.units_sent) == (2, 2, 1)


def test_a_pv_without_units_sends_un00_without_units():
    fwd, producer, _ = make([F144])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_units(PV, None)
    fwd.on_update(value(1))
    fwd.on_units(PV, None)
    fwd.on_update(value(2, NOW + 1))
    (un00,) = units_sent(producer)
    assert un00.units is None and un00.source_name == PV


def test_a_reconnection_sends_the_units_once_more():
    fwd, producer, _ = make([F144])
    for i in range(2):
        fwd.on_connection(PV, Connection.CONNECTED)
        fwd.on_update(value(i, NOW + 10 * i))
        fwd.on_units(PV, "K")
        fwd.on_update(value(i, NOW + 10 * i + 1))
        fwd.on_connection(PV, Connection.DISCONNECTED)
    assert [u.units for u in units_sent(producer)] == ["K", "K"]
    assert [u.timestamp_ns for u in units_sent(producer)] == [NOW, NOW + 10]


def test_values_held_at_a_disconnection_go_and_the_next_connection_waits_again():
    fwd, producer, _ = make([F144])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_update(value(1))
    fwd.on_connection(PV, Connection.DISCONNECTED)  # before any units came
    assert sent(producer, "un00", "f144") == [("f144", "X_sampleEnv")]
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_units(PV, "K")  # before this connection's first value: waits for it
    assert units_sent(producer) == []
    fwd.on_update(value(2, NOW + 1))
    assert [(u.units, u.timestamp_ns) for u in units_sent(producer)] == [("K", NOW + 1)]
    assert fwd.counters().updates == 2


def test_each_stream_gets_its_own_un00_whatever_its_schema():
    f142 = Stream(PV, "ca", "f142", "X_runLog")
    f144_again = Stream(PV, "ca", "f144", "X_runLog")
    fwd, producer, _ = make([F144, f142])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_units(PV, "K")
    fwd.on_update(value(1))
    assert sent(producer, "un00", "f142", "f144") == [
        ("un00", "X_sampleEnv"), ("un00", "X_runLog"), ("f144", "X_sampleEnv"),
        ("f142", "X_runLog")]
    # a stream added later is sent the units with its first value; the others are not again
    fwd.set_streams({F144: False, f142: False, f144_again: False})
    fwd.on_update(value(2, NOW + 1))
    assert [(u.units, u.timestamp_ns) for u in units_sent(producer)] == [
        ("K", NOW), ("K", NOW), ("K", NOW + 1)]


def test_units_that_come_with_a_value_go_just_before_it():
    """PVA: display.units arrives in the update that carries it."""
    over_pva = Stream(PV, "pva", "f144", "X_sampleEnv")
    fwd, producer, _ = make([over_pva])
    fwd.on_connection(PV, Connection.CONNECTED, "pva")
    fwd.on_units(PV, "K", "pva", True)
    fwd.on_update(value(1, NOW, "pva"))
    fwd.on_units(PV, "mK", "pva", True)
    assert len(units_sent(producer)) == 1  # not before the value that carries them
    fwd.on_update(value(2, NOW + 5, "pva"))
    assert [(u.units, u.timestamp_ns) for u in units_sent(producer)] == [
        ("K", NOW), ("mK", NOW + 5)]
    assert [s for s, _ in sent(producer, "un00", "f144")] == ["un00", "f144", "un00", "f144"]


def test_values_go_without_units_when_none_come_in_time():
    fwd, producer, clock = make([F144])
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_update(value(1))
    fwd.release_overdue()
    assert sent(producer) == []
    clock.ns += UNITS_WAIT_NS
    fwd.release_overdue()
    assert [s for s, _ in sent(producer, "un00", "f144")] == ["f144"]
    fwd.on_units(PV, "K")  # late: at once, stamped with the value it labels
    assert [(u.units, u.timestamp_ns) for u in units_sent(producer)] == [("K", NOW)]


def test_without_units_reported_nothing_waits():
    producer = FakeProducer()
    fwd = Forwarding([F144], Publisher(producer), "svc", clock_ns=lambda: NOW)
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_update(value(1))
    assert sent(producer, "un00", "f144") == [("f144", "X_sampleEnv")]


# -- CA: the units subscription (DBR_CTRL_*, DBE_PROPERTY) --

def ctrl_wire(data_type: ChannelType, units: bytes) -> bytes:
    metadata = DBR_TYPES[data_type](status=0, severity=0)
    if units:
        metadata.units = units
    response = EventAddResponse(data=[1], data_type=data_type, data_count=1, status=1,
                                subscriptionid=7, metadata=metadata)
    return bytes(response.header) + b"".join(bytes(b) for b in response.buffers)


def ca_source() -> tuple[CaSource, list, SimpleNamespace]:
    reported: list = []
    source = CaSource(lambda u: None, lambda *a: None, lambda *a: reported.append(a))
    source._time_types = _time_types()
    source._units_offsets = _units_offsets()
    manager = SimpleNamespace(
        subscriptions={7: SimpleNamespace(pv=SimpleNamespace(name=PV))},
        user_callback_executor=SimpleNamespace(submit=lambda fn, *args: fn(*args)))
    return source, reported, manager


def test_ca_units_are_read_on_the_fast_path():
    source, reported, manager = ca_source()
    for data_type, units, expected in [(ChannelType.CTRL_DOUBLE, b"K", "K"),
                                       (ChannelType.CTRL_LONG, b"counts", "counts"),
                                       (ChannelType.CTRL_FLOAT, b"mbar", "mbar"),
                                       (ChannelType.CTRL_DOUBLE, b"", None)]:
        raw = ctrl_wire(data_type, units)
        assert source._fast_event(manager, 7, int(data_type), 1, memoryview(raw)[16:])
        assert reported[-1] == (PV, expected, "ca", False)


def test_ca_types_without_units_report_none_through_caproto():
    source, reported, manager = ca_source()
    assert not source._fast_event(manager, 7, int(ChannelType.CTRL_ENUM), 1,
                                  memoryview(b"\0" * 430))
    enum = SimpleNamespace(metadata=DBR_TYPES[ChannelType.CTRL_ENUM]())
    source._units_callback(manager.subscriptions[7], enum)
    assert reported == [(PV, None, "ca", False)]


# -- PVA: display.units of the update --

TS = {"secondsPastEpoch": 1_800_000_000, "nanoseconds": 5}


def scalar(value: float, units: str) -> object:
    return NTScalar("d", display=True).type({"value": value, "timeStamp": TS,
                                             "display": {"units": units}})


class FakeSubscription:
    def __init__(self, items: list) -> None:
        self.items = deque(items)

    def pop(self) -> object:
        return self.items.popleft() if self.items else None

    def close(self) -> None:
        self.items.clear()


class Context:
    def __init__(self, items: list) -> None:
        self.items = items

    def monitor(self, channel: str, handler: object, request: str | None = None) -> object:
        subscription = FakeSubscription(self.items)
        self.handler = handler
        return subscription


def pva_source(items: list) -> tuple[PvaSource, list]:
    events: list = []
    source = PvaSource(lambda u: events.append(("value", float(u.value))), lambda *a: None,
                       lambda *a: events.append(("units", *a)))
    context = Context(items)
    source._context = context
    source._pop = FakeSubscription.pop
    source._early = threading.Lock()
    source._disconnected, source._finished = Disconnected, type("Finished", (Exception,), {})
    source.add([PV])
    context.handler()
    return source, events


def units_only(previous: object, units: str) -> object:
    """What QSRV sends for a changed EGU: the same value, only display.units marked."""
    item = previous.type()(previous.todict())
    item["display.units"] = units
    item.unmark()
    item.mark("display.units")
    return item


def test_pva_reports_units_at_connect_and_when_they_change():
    first = scalar(1.0, "K")
    again = scalar(2.0, "K")
    again.unmark()
    again.mark("value")
    items = [first, again, units_only(again, "mK"), scalar(3.0, "mK"), Disconnected(),
             scalar(4.0, "mK")]
    _, events = pva_source(items)
    assert events == [("units", PV, "K", "pva", True), ("value", 1.0), ("value", 2.0),
                      ("units", PV, "mK", "pva", False),  # no value: it did not change
                      ("value", 3.0),
                      ("units", PV, "mK", "pva", True), ("value", 4.0)]  # reconnected


def test_pva_types_without_display_report_none_once():
    enum = NTEnum().type({"value": {"index": 1, "choices": ["a", "b"]}, "timeStamp": TS})
    empty = scalar(1.0, "")
    _, events = pva_source([enum, enum])
    assert events == [("units", PV, None, "pva", True), ("value", 1.0), ("value", 1.0)]
    _, events = pva_source([empty])
    assert events[0] == ("units", PV, None, "pva", True)


def test_periodic_republish_sends_the_units_again_before_the_value():
    # a run that begins long after the PV connected still gets its units: the writer looks
    # back seconds, not hours
    producer, clock = FakeProducer(), Clock()
    fwd = Forwarding([F144], Publisher(producer), "svc", clock_ns=clock, units_reported=True,
                     periodic={F144})
    fwd.on_connection(PV, Connection.CONNECTED)
    fwd.on_units(PV, "K")
    fwd.on_update(value(1))
    before = len(producer.sent)
    fwd.republish()
    again = [schema_id(s.value) for s in producer.sent[before:]]
    assert again.index("un00") < again.index("f144")
    assert units_sent(producer)[-1].units == "K"
