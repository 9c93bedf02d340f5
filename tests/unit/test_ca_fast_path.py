"""The CA fast path decodes a monitor update exactly as caproto's own path does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from caproto import ChannelType, EventAddResponse
from caproto._commands import read_from_bytestream
from caproto._dbr import DBR_TYPES, TimeStamp
from caproto._utils import SERVER

from forwarder.ca_source import CaSource, _time_types, update_from_ca

CASES = [
    (ChannelType.TIME_DOUBLE, [4.25]),
    (ChannelType.TIME_DOUBLE, [1.0, 2.5, -3.0]),
    (ChannelType.TIME_FLOAT, [0.5]),
    (ChannelType.TIME_LONG, [-7]),
    (ChannelType.TIME_LONG, [1, 2, 3, 4, 5]),
    (ChannelType.TIME_INT, [12]),
    (ChannelType.TIME_ENUM, [2]),
    (ChannelType.TIME_CHAR, [104, 105, 0]),
]


def wire(data_type: ChannelType, data: list) -> bytes:
    metadata = DBR_TYPES[data_type](status=3, severity=1, stamp=TimeStamp(1_000_000_000, 123))
    response = EventAddResponse(data=data, data_type=data_type, data_count=len(data),
                                status=1, subscriptionid=7, metadata=metadata)
    return bytes(response.header) + b"".join(bytes(b) for b in response.buffers)


@pytest.mark.parametrize(("data_type", "data"), CASES)
def test_the_fast_path_decodes_as_caproto_does(data_type, data):
    raw = wire(data_type, data)
    _, command, _ = read_from_bytestream(bytearray(raw), SERVER)
    expected = update_from_ca("TE:X:A", command)

    submitted = []
    manager = SimpleNamespace(
        subscriptions={7: SimpleNamespace(pv=SimpleNamespace(name="TE:X:A"))},
        user_callback_executor=SimpleNamespace(submit=lambda fn, u: submitted.append(u)))
    source = CaSource(lambda u: None, lambda *a: None)
    source._time_types = _time_types()
    assert source._fast_event(manager, 7, int(data_type), len(data), memoryview(raw)[16:])
    (got,) = submitted
    assert (got.channel, got.timestamp_ns, got.severity, got.status) == (
        expected.channel, expected.timestamp_ns, expected.severity, expected.status)
    assert np.asarray(got.value).dtype == np.asarray(expected.value).dtype
    assert np.array_equal(got.value, expected.value)


def test_strings_and_unknown_subscriptions_take_caproto_s_path():
    source = CaSource(lambda u: None, lambda *a: None)
    source._time_types = _time_types()
    manager = SimpleNamespace(subscriptions={}, user_callback_executor=None)
    raw = wire(ChannelType.TIME_DOUBLE, [1.0])
    assert not source._fast_event(manager, 7, int(ChannelType.TIME_DOUBLE), 1,
                                  memoryview(raw)[16:])
    manager.subscriptions[7] = SimpleNamespace(pv=SimpleNamespace(name="TE:X:A"))
    assert not source._fast_event(manager, 7, int(ChannelType.TIME_STRING), 1,
                                  memoryview(b"\0" * 56))
