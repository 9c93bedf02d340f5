import numpy as np
from streaming_data_types.alarm_al00 import deserialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, deserialise_ep01

from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from datastream.streams import Stream
from forwarder.forwarding import Forwarding
from forwarder.publisher import Publisher
from forwarder.update import Connection, Update
from tests.fakes import FakeProducer

NOW = 1_800_000_000_000_000_000
TEMP = Stream("TE:X:TEMP", "ca", "f142", "X_sampleEnv")


def make(streams, capacity=None, periodic=None):
    producer = FakeProducer(capacity=capacity)
    return Forwarding(streams, Publisher(producer), "svc", clock_ns=lambda: NOW,
                      periodic=periodic), producer


def test_key_is_the_pv_and_timestamp_the_epics_time():
    fwd, producer = make([TEMP])
    fwd.on_update(Update("TE:X:TEMP", np.float64(4.2), NOW - 5_000_000))
    f142 = [s for s in producer.sent if schema_id(s.value) == "f142"]
    assert len(f142) == 1
    assert f142[0].key == b"TE:X:TEMP" and f142[0].timestamp == (NOW - 5_000_000) // 1_000_000
    assert deserialise_f142(f142[0].value).timestamp_ns == NOW - 5_000_000


def test_old_and_absurd_updates_are_dropped_and_counted():
    fwd, _ = make([TEMP])
    fwd.on_update(Update("TE:X:TEMP", np.float64(1), NOW))
    fwd.on_update(Update("TE:X:TEMP", np.float64(2), NOW - 1))  # older than the last
    fwd.on_update(Update("TE:X:TEMP", np.float64(3), 631_152_000))  # a never-processed record
    fwd.on_update(Update("TE:X:TEMP", np.float64(4), NOW + 10**15))  # days ahead
    counters = fwd.counters()
    assert (counters.forwarded, counters.dropped_old, counters.dropped_bad_time) == (1, 1, 2)


def test_alarm_changes_and_connections():
    fwd, producer = make([TEMP])
    fwd.on_connection("TE:X:TEMP", Connection.NEVER_CONNECTED)
    fwd.on_connection("TE:X:TEMP", Connection.CONNECTED)
    fwd.on_update(Update("TE:X:TEMP", np.float64(1), NOW, severity=0))
    fwd.on_update(Update("TE:X:TEMP", np.float64(2), NOW + 1, severity=0))
    fwd.on_update(Update("TE:X:TEMP", np.float64(3), NOW + 2, severity=2, status=3,
                         message="HIHI"))
    ids = [schema_id(s.value) for s in producer.sent]
    assert ids.count("ep01") == 2 and ids.count("f142") == 3 and ids.count("al00") == 2
    ep01 = [deserialise_ep01(s.value) for s in producer.sent if schema_id(s.value) == "ep01"]
    assert [e.status for e in ep01] == [ConnectionInfo.NEVER_CONNECTED, ConnectionInfo.CONNECTED]
    last_alarm = deserialise_al00([s.value for s in producer.sent
                                   if schema_id(s.value) == "al00"][-1])
    assert last_alarm.message == "HIHI"


def test_one_subscription_fans_out_to_every_schema():
    f144 = Stream("TE:X:TEMP", "ca", "f144", "X_runLog")
    fwd, producer = make([TEMP, f144, TEMP])
    assert fwd.channels("ca") == ["TE:X:TEMP"]
    fwd.on_update(Update("TE:X:TEMP", np.float64(1), NOW))
    assert sorted(s.topic for s in producer.sent if schema_id(s.value) in ("f142", "f144")) == [
        "X_runLog", "X_sampleEnv"]


def test_strings_cannot_go_as_f144_but_do_not_stop_others():
    fwd, producer = make([Stream("S", "ca", "f144", "t"), Stream("S", "ca", "f142", "t")])
    fwd.on_update(Update("S", "text", NOW))
    assert fwd.counters().serialise_errors == 1
    assert any(schema_id(s.value) == "f142" for s in producer.sent)


def test_a_full_queue_drops_and_counts_without_blocking():
    fwd, _ = make([TEMP], capacity=3)
    for i in range(10):
        fwd.on_update(Update("TE:X:TEMP", np.float64(i), NOW + i))
    assert fwd._publisher.counters().dropped_full > 0


def test_periodic_republish_keeps_the_epics_timestamp():
    fwd, producer = make([TEMP], periodic={TEMP})
    fwd.on_connection("TE:X:TEMP", Connection.CONNECTED)
    fwd.on_update(Update("TE:X:TEMP", np.float64(7), NOW - 10**12))
    assert fwd.republish() == 2  # the value and the connection state
    again = [s for s in producer.sent if schema_id(s.value) == "f142"][-1]
    assert again.timestamp == NOW // 1_000_000
    assert deserialise_f142(again.value).timestamp_ns == NOW - 10**12


def test_periodic_republish_carries_the_connection_state_connected_or_not():
    fwd, producer = make([TEMP], periodic={TEMP})
    fwd.on_connection("TE:X:TEMP", Connection.CONNECTED)
    fwd.on_connection("TE:X:TEMP", Connection.DISCONNECTED)
    sent = len(producer.sent)
    assert fwd.republish() == 1  # no value while disconnected, but the state
    ep01 = deserialise_ep01(producer.sent[sent].value)
    assert ep01.status == ConnectionInfo.DISCONNECTED
    assert producer.sent[sent].key == b"TE:X:TEMP"


def test_the_same_pv_over_ca_and_pva_are_separate_subscriptions():
    over_pva = Stream("TE:X:TEMP", "pva", "f142", "X_other")
    fwd, producer = make([TEMP, over_pva])
    fwd.on_update(Update("TE:X:TEMP", np.float64(1), NOW, protocol="pva"))
    assert [s.topic for s in producer.sent if schema_id(s.value) == "f142"] == ["X_other"]


def test_changing_the_streams_opens_closes_and_destroys():
    fwd, producer = make([TEMP])
    fwd.on_connection("TE:X:TEMP", Connection.CONNECTED)
    field = Stream("TE:X:FIELD", "pva", "f144", "X_sampleEnv")
    change = fwd.set_streams({field: False})
    assert change.opened == [("pva", "TE:X:FIELD")] and change.closed == [("ca", "TE:X:TEMP")]
    ep01 = [deserialise_ep01(s.value) for s in producer.sent if schema_id(s.value) == "ep01"]
    assert ep01[-1].status == ConnectionInfo.DESTROYED and ep01[-1].source_name == "TE:X:TEMP"
    before = len(producer.sent)
    fwd.on_update(Update("TE:X:TEMP", np.float64(1), NOW))  # late update of a closed channel
    assert len(producer.sent) == before
    assert not fwd.set_streams({field: False})


def test_tdct_and_se00_carry_a_counter_per_stream():
    from streaming_data_types.array_1d_se00 import deserialise_se00
    from streaming_data_types.timestamps_tdct import deserialise_tdct

    tdc = Stream("TE:X:TDC", "ca", "tdct", "t")
    wave = Stream("TE:X:TDC", "ca", "se00", "t")
    fwd, producer = make([tdc, wave])
    for i in range(2):
        fwd.on_update(Update("TE:X:TDC", np.array([NOW + i, NOW + 10 + i], dtype=np.int64),
                             NOW + i))
    tdct = [deserialise_tdct(s.value) for s in producer.sent if schema_id(s.value) == "tdct"]
    se00 = [deserialise_se00(s.value) for s in producer.sent if schema_id(s.value) == "se00"]
    assert [t.sequence_counter for t in tdct] == [1, 2]
    assert list(tdct[1].timestamps) == [NOW + 1, NOW + 11]
    assert [s.message_counter for s in se00] == [1, 2] and se00[0].timestamp_unix_ns == NOW


def test_delivered_is_what_was_queued_less_failures_and_what_is_still_held():
    fwd, producer = make([TEMP])
    fwd.on_update(Update("TE:X:TEMP", np.float64(1.0), NOW - 2_000_000))
    fwd.on_update(Update("TE:X:TEMP", np.float64(2.0), NOW - 1_000_000))
    queued = fwd._publisher.counters().queued
    assert queued >= 2 and fwd._publisher.counters().delivered == 0  # held by the producer
    producer.poll()
    counters = fwd._publisher.counters()
    assert (counters.delivered, counters.delivery_errors) == (queued, 0)
    producer.fail_with = "broker gone"
    fwd.on_update(Update("TE:X:TEMP", np.float64(3.0), NOW))
    producer.poll()
    counters = fwd._publisher.counters()
    assert (counters.queued, counters.delivered, counters.delivery_errors) == (
        queued + 1, queued, 1)


def test_the_publishing_thread_serves_delivery_reports_in_batches():
    from forwarder.publisher import SERVE_EVERY

    producer = FakeProducer(fail_with="broker gone")
    publisher = Publisher(producer)  # no poll thread started: only publish() serves reports
    for i in range(SERVE_EVERY - 1):
        publisher.publish("t", b"k", b"x", i)
    assert publisher.counters().delivery_errors == 0 and len(producer) == SERVE_EVERY - 1
    publisher.publish("t", b"k", b"x", SERVE_EVERY)
    assert publisher.counters().delivery_errors == SERVE_EVERY and len(producer) == 0


def test_a_stream_kept_through_a_change_keeps_its_counter_and_last_time():
    from streaming_data_types.timestamps_tdct import deserialise_tdct

    tdc = Stream("TE:X:TDC", "ca", "tdct", "t")
    fwd, producer = make([tdc])
    fwd.on_update(Update("TE:X:TDC", np.array([NOW], dtype=np.int64), NOW))
    fwd.set_streams({tdc: False, TEMP: False})
    fwd.on_update(Update("TE:X:TDC", np.array([NOW], dtype=np.int64), NOW - 1))  # older: dropped
    fwd.on_update(Update("TE:X:TDC", np.array([NOW + 1], dtype=np.int64), NOW + 1))
    counters = [deserialise_tdct(s.value).sequence_counter for s in producer.topics("t")
                if schema_id(s.value) == "tdct"]
    assert counters == [1, 2] and fwd.counters().dropped_old == 1
