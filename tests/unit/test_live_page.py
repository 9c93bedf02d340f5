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


def _arrays(banks):
    from datastream.time_channels import TimeChannels
    from liveview.array_pvs import ArrayPVs
    from liveview.run_histogram import RunHistogram

    return ArrayPVs("IN:X:LIVE:", RunHistogram(1, 10, TimeChannels(0, 1000, 4)), (3, 4), banks)


def test_a_region_is_the_pixels_under_it_in_the_image_drawn():
    import numpy as np

    panel = np.arange(1, 7).reshape(2, 3)  # ids 1..6, two rows of three
    arrays = _arrays({"panel": panel, "tube": np.array([[7, 8, 9, 10]])})
    assert arrays.roi_ids("panel", (0, 1), (1, 2)).tolist() == [2, 3, 5, 6]
    assert arrays.roi_ids("panel", (1, 0), (2, 1)).tolist() == [2, 3, 5, 6]  # dragged back
    assert arrays.roi_ids("tube", (0, 0), (3, 3)).tolist() == [10]
    for name, rows, cols in (("panel", (0, 2), (0, 0)), ("panel", (0, 0), (-1, 0)),
                             ("nobank", (0, 0), (0, 0)), ("detector", (0, 0), (0, 0))):
        with pytest.raises(ValueError):
            arrays.roi_ids(name, rows, cols)
    # no banks: the whole detector, near square, its cells past the last pixel empty
    whole = _arrays({})
    assert whole.roi_ids("detector", (2, 2), (0, 3)).tolist() == [9, 10]


def test_the_api_answers_a_bad_region_with_its_reason():
    import json
    import urllib.error
    import urllib.request

    from liveview.web import Roi, WebServer, make_app
    from tests.conftest import free_port

    asked = []
    server = WebServer(make_app(lambda *query: asked.append(query) or {"ok": 1}),
                       "127.0.0.1", free_port())
    server.start()
    try:
        with urllib.request.urlopen(server.url + "api/live?pixel=3&roi=a:b:0:1:2:3") as answer:
            assert json.load(answer) == {"ok": 1}
        with urllib.request.urlopen(server.url + "api/live?period=2") as answer:
            assert json.load(answer) == {"ok": 1}
        assert asked == [(3, Roi("a:b", (0, 2), (1, 3)), None),  # a name may hold a colon
                         (None, None, 2)]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "api/live?roi=panel:1:2")
        assert refused.value.code == 400
        assert "IMAGE:ROW0:COL0:ROW1:COL1" in json.load(refused.value)["error"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "api/live?period=one")
        assert "period 'one' is not a number" in json.load(refused.value)["error"]
    finally:
        server.close()


def test_a_bank_too_large_for_the_page_is_summed_in_blocks():
    import numpy as np

    from liveview.web import page_image

    small = np.arange(12, dtype=np.uint32).reshape(3, 4)
    same, block = page_image(small, max_cells=12)
    assert block == 1 and same is small
    shown, block = page_image(small, max_cells=4)  # 2 x 2 blocks, the last column's partial
    assert block == 2 and shown.shape == (2, 2)
    assert shown.tolist() == [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9, 10 + 11]]
    big = np.ones((1000, 1000), np.uint32)  # a million pixels: at most 256k cells
    shown, block = page_image(big)
    assert shown.size <= 256 * 1024 and int(shown.sum()) == 1_000_000 and block == 2
