import numpy as np
import pytest

from datastream.schemas import MalformedMessage, schema_id
from datastream.schemas.f142 import deserialise_f142, serialise_f142


@pytest.mark.parametrize("value", [
    np.int8(-3), np.uint8(7), np.int16(-300), np.uint16(300), np.int32(-70000),
    np.uint32(70000), np.int64(-2**40), np.uint64(2**40), np.float32(1.5), np.float64(2.25),
])
def test_numeric_scalars_round_trip(value):
    msg = deserialise_f142(serialise_f142(value, "TE:X:PV", 1_700_000_000_123_456_789))
    assert msg.value == value and msg.value.dtype == value.dtype
    assert msg.source_name == "TE:X:PV"
    assert msg.timestamp_ns == 1_700_000_000_123_456_789


@pytest.mark.parametrize("dtype", ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"])
def test_arrays_round_trip(dtype):
    value = np.arange(5).astype(dtype)
    msg = deserialise_f142(serialise_f142(value, "pv", 1))
    np.testing.assert_array_equal(msg.value, value)
    assert msg.value.dtype == value.dtype


def test_strings_and_string_arrays():
    assert deserialise_f142(serialise_f142("idle", "pv", 1)).value == "idle"
    arr = deserialise_f142(serialise_f142(np.array(["a", "bc"]), "pv", 1)).value
    assert list(arr) == ["a", "bc"]


def test_alarm_uses_epics_numbering():
    msg = deserialise_f142(serialise_f142(1.0, "pv", 1, alarm_status=3, alarm_severity=2))
    assert (msg.alarm_status, msg.alarm_severity) == (3, 2)  # HIHI, MAJOR
    assert deserialise_f142(serialise_f142(1.0, "pv", 1, 0, 0)).alarm_severity == 0


def test_schema_id_and_garbage():
    assert schema_id(serialise_f142(1.0, "pv", 1)) == "f142"
    with pytest.raises(MalformedMessage):
        schema_id(b"abc")
    with pytest.raises(MalformedMessage):
        deserialise_f142(b"\x00\x00\x00\x00f142" + b"\xff" * 20)


def test_readable_by_the_reference_flatbuffers_tables():
    """The buffer is the schema's own: the generated reader accepts it."""
    from streaming_data_types.fbschemas.logdata_f142.LogData import LogData
    from streaming_data_types.fbschemas.logdata_f142.Value import Value

    buf = serialise_f142(np.float64(3.5), "pv", 42)
    root = LogData.GetRootAsLogData(buf, 0)
    assert root.ValueType() == Value.Double and root.Timestamp() == 42
