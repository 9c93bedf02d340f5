"""The live page's small parts: its --http address, the detector image's shape, the plotting
library served from its wheel, the reduction and the pixel ids as the page gets them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from liveview.web import PAGE, PAGE_SCRIPTS, image_shape, parse_http


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
    script = (PAGE_SCRIPTS / "live.js").read_text()
    assert "api/live" in script and "setInterval(update, 250)" in script
    for text in (page, script):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def _get(url: str, gzip_ok: bool = True) -> tuple[int, Any, bytes]:
    """status, headers (any case), body"""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def test_the_plotting_library_is_served_from_its_wheel_gzipped_and_kept():
    import gzip
    import importlib.metadata
    import re

    from liveview.web import LIBRARY_FILES, WebServer, library_dir, make_app
    from tests.conftest import free_port

    folder, version = library_dir()
    assert version == importlib.metadata.version("bokeh")
    assert "site-packages" in str(folder) or "dist-packages" in str(folder)  # not the repo's
    server = WebServer(make_app(lambda *query: {}), "127.0.0.1", free_port())
    server.start()
    try:
        status, headers, body = _get(server.url)
        page = body.decode()
        assert status == 200 and headers["Cache-Control"] == "no-cache"
        named = re.findall(r'<script src="(lib/[^"]+)"', page)
        assert named == [f"lib/bokeh-{version}/{name}" for name in LIBRARY_FILES]
        for address, name in zip(named, LIBRARY_FILES, strict=True):
            status, headers, body = _get(server.url + address)
            whole = (folder / name).read_bytes()
            assert status == 200 and headers["Content-Encoding"] == "gzip"
            assert "immutable" in headers["Cache-Control"]  # its address names its version
            assert gzip.decompress(body) == whole and len(body) < len(whole) / 2
            status, headers, body = _get(server.url + address, gzip_ok=False)
            assert body == whole and "Content-Encoding" not in headers
        status, headers, body = _get(server.url + "page/live.js")
        assert status == 200 and b"livePlots" in gzip.decompress(body)
        # nothing else of the wheel or the disk, nor another version
        lib = f"lib/bokeh-{version}/"
        for address in (lib + "bokeh.js", lib + "..%2Fcompiler.js", lib + "../../../setup.cfg",
                        "lib/bokeh-0.0.1/bokeh.min.js", "page/..%2Fweb.py", "page/" + "x" * 5000,
                        "lib/" + "y" * 3000):
            assert _get(server.url + address)[0] == 404, address
    finally:
        server.close()


def test_the_reduction_is_sent_to_the_page_in_bounded_groups():
    import numpy as np

    from liveview.web import PAGE_CURVE_BINS, group_bins, reduction_page

    counts, edges = np.arange(10.0), np.arange(11.0)
    grouped, coarse = group_bins(counts, edges, 4)  # the last group partial
    assert grouped.tolist() == [0 + 1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9]
    assert coarse.tolist() == [0, 4, 8, 10]
    bins = 10_000  # 3 bins a point: 3,334 of them
    reduced = SimpleNamespace(
        edges=np.linspace(0.5, 5, bins + 1), banks={"A": np.ones(bins, np.uint64),
                                                     "ALL": np.ones(bins, np.uint64)},
        image=np.ones((2000, bins), np.uint64), two_theta_edges_deg=np.linspace(10, 170, 2001),
        wavelength_edges=np.linspace(1, 8, 101), monitors={"M": np.arange(100, dtype=np.uint64)},
        events=2 * bins, outside=3, monitor_counts=4950.0)
    page = reduction_page(reduced)
    d = page["d"]
    assert d["group"] == 3 and len(d["banks"]["A"]) == len(d["edges"]) - 1 <= PAGE_CURVE_BINS
    assert sum(d["banks"]["A"]) == bins and d["edges"][0] == 0.5 and d["edges"][-1] == 5
    image = page["d_two_theta"]
    assert image["width"] == len(d["banks"]["A"]) and len(image["counts"]) <= 256 * 1024
    assert image["height"] == len(image["two_theta_edges"]) - 1
    assert len(image["counts"]) == image["height"] * image["width"]
    assert sum(image["counts"]) == 2000 * bins  # every count, in fewer cells
    assert page["lambda"]["monitors"]["M"] == list(range(100))  # short: as it is
    assert (d["events"], d["outside"], d["monitor_counts"]) == (2 * bins, 3, 4950.0)


def test_pixel_ids_under_the_mouse_where_a_bank_is_regular():
    import numpy as np

    from liveview.web import pixel_layout

    assert pixel_layout(np.arange(1, 13).reshape(3, 4)) == {
        "first": 1, "row_step": 4, "col_step": 1, "last": 12}
    columns_first = np.arange(100, 112).reshape(4, 3).T  # ids down the columns
    assert pixel_layout(columns_first) == {"first": 100, "row_step": 1, "col_step": 3,
                                           "last": 111}
    whole = np.full(16, -1)
    whole[:14] = np.arange(14)  # the whole detector, its last cells no pixel
    assert pixel_layout(whole.reshape(4, 4))["last"] == 13
    assert pixel_layout(np.array([[1, 2], [4, 3]])) is None  # irregular: rows, columns only


def test_the_live_state_carries_the_reduction_when_the_view_has_one():
    import numpy as np

    from liveview import web

    reduction = _Reduction()
    view = _View(reduction)
    first = web.live_state(view, None)
    assert first["reduction"]["d"]["banks"]["ALL"] == [1.0, 2.0]
    assert first["pixel_layouts"] == {"panel": {"first": 1, "row_step": 3, "col_step": 1,
                                                "last": 6}}
    reduction.version += 1
    again = web.live_state(view, None)  # within REDUCTION_PAGE_S: the same, not snapshot
    assert reduction.snapshots == 1 and again["reduction"] is first["reduction"]
    view.reduction = None
    assert "reduction" not in web.live_state(view, None)
    view.page = {**view.page, "reduction": {"as": "published"}}  # the publisher's, if any
    assert web.live_state(view, None)["reduction"] == {"as": "published"}
    del np


class _Reduction:
    def __init__(self) -> None:
        self.version = 0
        self.snapshots = 0

    def snapshot(self):
        import numpy as np

        self.snapshots += 1
        return SimpleNamespace(
            edges=np.array([1.0, 2.0, 3.0]), banks={"ALL": np.array([1, 2], np.uint64)},
            image=np.ones((1, 2)), two_theta_edges_deg=np.array([10.0, 20.0]),
            wavelength_edges=np.array([1.0, 2.0]), monitors={}, events=3, outside=0,
            monitor_counts=None)


class _View:
    def __init__(self, reduction) -> None:
        import numpy as np

        self.reduction = reduction
        self.config = SimpleNamespace(name="X")
        self.run_name, self.title = "", ""
        self.pvs = SimpleNamespace(values=dict)
        self.page = {"tof": {"edges": [], "counts": []},
                     "images": [{"name": "panel", "counts": [0] * 6}]}
        self.arrays = SimpleNamespace(image_ids=lambda name: np.arange(1, 7).reshape(2, 3))
        self.histogram = SimpleNamespace(
            snapshot=lambda: {"stop_ns": None}, max_periods=1, first_pixel=1, n_pixels=6)


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
    # the forwarder's un00 label the axes: the last units of a source, "" for none
    from datastream.schemas.un00 import serialise_un00

    logs.add(serialise_un00("T", 1, "K"))
    logs.add(serialise_un00("T", 2, "mK"))
    logs.add(serialise_un00("B", 1, None))
    assert logs.units() == {"T": "mK", "B": ""}


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
