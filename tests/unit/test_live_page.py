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
    assert "/api/live" in page and "setInterval(update, 500)" in page
    assert "http://" not in page and "https://" not in page
