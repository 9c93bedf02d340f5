"""Patched cached buffers are the very messages the serialisers build."""

import numpy as np
import pytest
from streaming_data_types.logdata_f144 import deserialise_f144, serialise_f144

from datastream.schemas.f142 import deserialise_f142, serialise_f142
from forwarder.message_templates import TemplateCache

DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float32, np.float64]
TS = 1_790_000_000_123_456_789


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (5,)])
def test_f142_patched_equals_built(dtype, shape):
    cache = TemplateCache()
    rng = np.random.default_rng(1)
    for i in range(5):
        value = (rng.random(shape) * 100).astype(dtype)
        if not shape:
            value = dtype(value)
        got = cache.render("f142", "TE:X:PV", value, TS + i, i % 3, i % 4)
        assert got == serialise_f142(value, "TE:X:PV", TS + i, i % 3, i % 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (7,)])
def test_f144_patched_reads_back(dtype, shape):
    cache = TemplateCache()
    for value in [np.zeros(shape, dtype), np.full(shape, 3, dtype)]:
        got = deserialise_f144(cache.render("f144", "TE:X:PV", value, TS))
        want = deserialise_f144(serialise_f144("TE:X:PV", value, TS))
        assert got.timestamp_unix_ns == want.timestamp_unix_ns == TS
        np.testing.assert_array_equal(got.value, want.value)
        assert got.source_name == "TE:X:PV"


def test_a_new_length_or_type_gets_a_new_template_and_text_has_none():
    cache = TemplateCache()
    a = cache.render("f142", "W", np.arange(3.0), TS)
    b = cache.render("f142", "W", np.arange(4.0), TS)
    c = cache.render("f142", "W", np.int32(2), TS)
    assert deserialise_f142(a).value.tolist() == [0, 1, 2]
    assert deserialise_f142(b).value.tolist() == [0, 1, 2, 3]
    assert deserialise_f142(c).value == 2
    assert cache.render("f142", "W", "text", TS) is None
