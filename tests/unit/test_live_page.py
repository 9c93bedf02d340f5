"""The live page's small pure parts: its --http address and the detector image's shape."""

from __future__ import annotations

import pytest

from liveview.web import PAGE, image_shape, parse_http


def test_http_addresses():
    assert parse_http("127.0.0.1:8090") == ("127.0.0.1", 8090)
    assert parse_http("8090") == ("127.0.0.1", 8090)
    for bad in ("localhost:http", "127.0.0.1:0", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="--http"):
            parse_http(bad)


def test_the_image_is_near_square_unless_configured():
    assert image_shape(16384, None) == (128, 128)
    assert image_shape(1000, None) == (32, 32)  # the last row part empty
    assert image_shape(1024, 64) == (16, 64)


def test_the_page_needs_nothing_from_the_network():
    page = PAGE.read_text()
    assert "/api/live" in page and "setInterval(update, 250)" in page
    assert "http://" not in page and "https://" not in page


def test_sample_environment_logs_keep_numeric_scalars():
    import numpy as np
    from streaming_data_types.logdata_f144 import serialise_f144

    from datastream.schemas.f142 import serialise_f142
    from liveview.se_logs import MAX_POINTS_SHOWN, SampleEnvLogs

    logs = SampleEnvLogs(None, "X_sampleEnv")
    for i in range(2 * MAX_POINTS_SHOWN):
        logs.add(serialise_f144("T", 280.0 + i, (1_700_000_000 + i) * 10**9))
    logs.add(serialise_f142(300, "B", 1_700_000_000 * 10**9))
    logs.add(serialise_f144("S", np.arange(3.0), 1_700_000_000 * 10**9))  # an array: left out
    logs.add(serialise_f142("idle", "MODE", 1_700_000_000 * 10**9))  # text: left out
    logs.add(b"\0\0\0\0ev44 not a log")
    shown = logs.snapshot()
    assert set(shown) == {"T", "B"}
    assert len(shown["T"]) == MAX_POINTS_SHOWN and shown["T"][0] == [1_700_000_000.0, 280.0]
    assert shown["B"] == [[1_700_000_000.0, 300.0]]
