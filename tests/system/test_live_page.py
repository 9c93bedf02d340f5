"""The live page's plots in Debian's headless chromium, read back from BokehJS's own models:
each plot's axis titles (with units) and tick labels as drawn, its values equal to the JSON
the live view answers, colour bars on the images, log toggles, the zoom kept across
updates, the read-out under the mouse (pixel id, bank, counts, TOF, d), a region dragged out
over a bank, the reduction's views, and the page's load in a fresh browser (its time is
printed; the 1 s goal is benchmarks/live_page_load.py's to measure, as a test on a busy
machine cannot). The live view behind the page is a stand-in here (its JSON): the page with
the real live view is in test_liveview.py. A screenshot of each run goes to the test's
tmp dir (printed)."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from liveview.web import WebServer, make_app, page_entry, pixel_layout, reduction_page
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.system

PAGE_LOAD_S = 1.0  # issue 21's goal, measured by benchmarks/live_page_load.py
EDGES_NS = np.linspace(0, 20_000_000, 1001)  # 1,000 channels over 20 ms
CENTRES_NS = (EDGES_NS[:-1] + EDGES_NS[1:]) / 2
TOF = (np.exp(-((CENTRES_NS - 8e6) / 2e6) ** 2) * 500).astype(int)
PANEL = np.add.outer(np.arange(24), np.arange(32)).astype(np.uint32)  # ids 1..768
BACK = np.full((8, 32), 5, np.uint32)  # ids 769..1024
T0 = 1_700_000_000.0


def reduced() -> SimpleNamespace:
    """A liveview.reduction.Reduced's fields, with logarithmic d bins (as dd/d is kept)."""
    edges = np.geomspace(0.5, 5.0, 301)
    d = (edges[:-1] + edges[1:]) / 2
    peaks = sum(np.exp(-((d - p) / 0.02) ** 2) for p in (1.1, 1.6, 2.3, 3.1))
    banks = {"PANEL": (peaks * 100).astype(np.uint64),
             "BACKSCATTER": (peaks * 40).astype(np.uint64)}
    banks["ALL"] = banks["PANEL"] + banks["BACKSCATTER"]
    lam = np.linspace(0.5, 8.0, 201)
    mon = (np.exp(-((lam[1:] - 2.5) / 1.2) ** 2) * 500).astype(np.uint64)
    return SimpleNamespace(edges=edges, banks=banks, image=np.outer(np.arange(1, 41), peaks),
                           two_theta_edges_deg=np.linspace(10, 170, 41),
                           wavelength_edges=lam, monitors={"MON1": mon},
                           events=int(banks["ALL"].sum()), outside=7,
                           monitor_counts=float(mon.sum()))


def stand_in(with_reduction: bool):
    reduction = reduction_page(reduced()) if with_reduction else None

    def state(pixel, roi, period) -> dict[str, object]:
        out: dict[str, object] = {
            "instrument": "SYS", "run": {"number": "00000042", "title": "stand-in",
                                         "state": "RUNNING"},
            "counters": {"EVENTS": int(TOF.sum()), "COUNTRATE": 1234.5, "NUMPERIODS": 1},
            "logs": {"SE:TEMP": [[T0 + i, 280.0 + i / 10] for i in range(60)]},
            "log_units": {"SE:TEMP": "K"},
            "tof": {"edges": EDGES_NS.tolist(), "counts": TOF.tolist()},
            "images": [page_entry("PANEL", PANEL), page_entry("BACKSCATTER", BACK)],
            "pixel_layouts": {"PANEL": pixel_layout(np.arange(1, 769).reshape(24, 32)),
                              "BACKSCATTER": pixel_layout(np.arange(769, 1025).reshape(8, 32))}}
        if reduction is not None:
            out["reduction"] = reduction
        if pixel is not None:
            out["pixel"] = {"id": pixel, "counts": (TOF // 10).tolist()}
        if roi is not None:
            (r0, r1), (c0, c1) = sorted(roi.rows), sorted(roi.cols)
            image = PANEL if roi.image == "PANEL" else BACK
            part = image[r0:r1 + 1, c0:c1 + 1]
            out["roi"] = {"image": roi.image, "rows": [r0, r1], "cols": [c0, c1],
                          "pixels": int(part.size), "counts": [int(part.sum())]}
        return out

    return state


@pytest.fixture
def page():
    from tests.system_tools import headless_chromium

    servers, drivers = [], []

    def open_page(with_reduction: bool = True):
        server = WebServer(make_app(stand_in(with_reduction)), "127.0.0.1", free_port())
        server.start()
        servers.append(server)
        driver = headless_chromium()  # a fresh browser: nothing of the library cached
        drivers.append(driver)
        driver.set_window_size(1400, 2600)
        driver.get(server.url)
        return driver, server

    yield open_page
    for driver in drivers:
        driver.quit()
    for server in servers:
        server.close()


def run(driver, script: str, *args):
    """A script's promise, awaited (`done` resolves it)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];" + script, *args)


def drawn(driver) -> float:
    """ms from navigating to the page until its first plots were drawn."""
    wait_until(lambda: driver.execute_script("return !!window.pageDrawn"), 20,
               "the page's first update")
    return run(driver, "window.pageDrawn.then(done)")


def screenshot(driver, tmp_path, name: str) -> None:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    print(f"screenshot of the live page: {path}")


def test_the_page_loads_in_a_fresh_browser_with_the_library_gzipped(page):
    driver, _ = page()
    print(f"live page drawn {drawn(driver):.0f} ms after navigating (goal {PAGE_LOAD_S} s: "
          "benchmarks/live_page_load.py)")
    # the library came gzipped, from the wheel, to be kept for good
    sizes = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/lib/'))"
        ".map(e => [e.name, e.encodedBodySize, e.decodedBodySize])")
    print("library served (bytes on the wire, unpacked):", sizes)
    assert len(sizes) == 2 and all(wire < body / 2 for _, wire, body in sizes), sizes


def test_the_plots_show_the_live_views_numbers_on_labelled_axes(page, tmp_path):
    from selenium.webdriver.common.by import By

    driver, server = page()
    drawn(driver)
    with urllib.request.urlopen(server.url + "api/live") as answer:
        state = json.load(answer)
    try:
        # the total spectrum: x the channels' centres in µs, y the JSON's counts
        tof = driver.execute_script(
            "const p = livePlots.tof, d = p.sources['all pixels'].data;"
            "return [p.figure.below[0].axis_label, p.figure.left[0].axis_label,"
            "        Array.from(d.x), Array.from(d.y)]")
        assert tof[:2] == ["time of flight (µs)", "counts"]
        np.testing.assert_allclose(tof[2], CENTRES_NS / 1000)
        assert tof[3] == state["tof"]["counts"] == TOF.tolist()
        assert driver.find_element(By.ID, "tof-sum").text == str(TOF.sum())
        ticks = run(driver, "tickLabels(livePlots.tof).then(done)")
        assert [float(t) for t in ticks] == [0, 5000, 10000, 15000, 20000], ticks
        y_ticks = [float(t) for t in run(driver, "tickLabels(livePlots.tof, 'left').then(done)")]
        # up to the highest count, within the axis's padding
        assert y_ticks[0] == 0 and TOF.max() / 2 < y_ticks[-1] <= 1.1 * TOF.max(), y_ticks
        # each bank's image: its counts in its shape, rows and columns on its axes, its own
        # colour bar over its counts
        panel = driver.execute_script(
            "const p = livePlots.images.PANEL, im = p.source.data.image[0];"
            "return [p.figure.below[0].axis_label, p.figure.left[0].axis_label,"
            "        Array.from(im), Array.from(im.shape), p.bar.title,"
            "        p.bar.color_mapper.low, p.bar.color_mapper.high,"
            "        p.figure.y_range.start, p.figure.y_range.end]")
        assert panel[:2] == ["column", "row"]
        assert panel[2] == PANEL.ravel().tolist() and panel[3] == [24, 32]
        assert panel[4:7] == ["counts", 0, PANEL.max()]
        assert panel[7:] == [24, 0]  # row 0 at the top
        assert [float(t) for t in run(
            driver, "tickLabels(livePlots.images.PANEL, 'left').then(done)")] == \
            [0, 5, 10, 15, 20]
        # the sample-environment log against time, its units on the axis
        log = driver.execute_script(
            "const p = livePlots.logs['SE:TEMP'], d = p.sources['SE:TEMP'].data;"
            "return [p.figure.left[0].axis_label, p.figure.below[0].axis_label,"
            "        Array.from(d.x), Array.from(d.y)]")
        assert log[:2] == ["SE:TEMP (K)", "time"]
        assert log[2] == [(T0 + i) * 1000 for i in range(60)]
        assert log[3] == [p[1] for p in state["logs"]["SE:TEMP"]]
        # the count rate, from the counters
        rate = driver.execute_script("return Array.from(livePlots.rate.sources.COUNTRATE.data.y)")
        assert rate and set(rate) == {1234.5}
        # the reduction: I(d) per bank against d in Å, I(2θ, d), the monitor's I(λ)
        red = state["reduction"]
        d = driver.execute_script(
            "const p = livePlots.dspacing;"
            "return [p.figure.below[0].axis_label, Object.keys(p.sources),"
            "        Array.from(p.sources.PANEL.data.y), Array.from(p.sources.PANEL.data.x)]")
        assert d[0] == "d-spacing (Å)" and d[1] == ["PANEL", "BACKSCATTER", "ALL"]
        assert d[2] == red["d"]["banks"]["PANEL"]
        edges = np.array(red["d"]["edges"])
        np.testing.assert_allclose(d[3], (edges[:-1] + edges[1:]) / 2)
        dtt = driver.execute_script(
            "const p = livePlots.dTwoTheta, im = p.source.data.image[0];"
            "return [p.figure.below[0].axis_label, p.figure.left[0].axis_label,"
            "        Array.from(im.shape), Array.from(im), p.xLog]")
        assert dtt[:2] == ["d-spacing (Å)", "2θ (degrees)"]
        assert dtt[2] == [40, 300] and dtt[3] == red["d_two_theta"]["counts"]
        assert dtt[4] is True  # logarithmic d bins: equal cells on a log d axis
        lam = driver.execute_script(
            "const p = livePlots.lambda;"
            "return [p.figure.below[0].axis_label, Array.from(p.sources.MON1.data.y)]")
        assert lam == ["wavelength λ (Å)", red["lambda"]["monitors"]["MON1"]]
        assert driver.find_element(By.ID, "reduction-missing").is_displayed() is False
    finally:
        screenshot(driver, tmp_path, "live_page_plots.png")


def test_log_toggles_zoom_read_out_and_region(page, tmp_path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    driver, _ = page()
    drawn(driver)

    def pointer(*moves, press=False):
        builder = ActionBuilder(driver)
        (x, y), *rest = moves
        builder.pointer_action.move_to_location(int(x), int(y))
        if press:
            builder.pointer_action.pointer_down()
        for x, y in rest:
            builder.pointer_action.move_to_location(int(x), int(y))
        if press:
            builder.pointer_action.pointer_up()
        builder.perform()

    def updates() -> int:
        return int(driver.find_element(By.ID, "updates").text)

    try:
        # a box zoom (the spectra's first drag tool) over the TOF plot's middle half
        box = run(driver, "frameBox(livePlots.tof).then(done)")
        driver.execute_script("window.scrollTo(0, 0)")
        left, top, w, h = box["left"], box["top"], box["width"], box["height"]
        pointer((left + w / 4, top + 5), (left + w / 2, top + h / 2),
                (left + 3 * w / 4, top + h - 5), press=True)
        zoomed = driver.execute_script(
            "const r = livePlots.tof.figure.x_range; return [r.start, r.end]")
        assert 4000 < zoomed[0] < 6000 and 14000 < zoomed[1] < 16000, zoomed
        seen = updates()
        wait_until(lambda: updates() >= seen + 3, 10, "three updates")
        assert driver.execute_script(
            "const r = livePlots.tof.figure.x_range; return [r.start, r.end]") == zoomed
        # the read-out under the mouse: the channel's TOF and counts
        pointer((left + w / 2, top + h / 2))
        readout = driver.execute_script(
            "return document.querySelector('#tof-panel .readout').textContent")
        assert readout.startswith("TOF ") and " µs, all pixels: counts " in readout, readout
        tof_us, counts = float(readout.split()[1]), int(readout.rsplit(" ", 1)[1])
        assert counts == TOF[int(tof_us * 1000 // 20_000)], readout
        # the log toggle: a log y axis, the zoom in x kept
        driver.find_element(By.ID, "tof-log").click()
        wait_until(lambda: driver.execute_script(
            "return livePlots.tof.figure.y_scale instanceof Bokeh.LogScale"), 5, "a log axis")
        assert driver.execute_script(
            "const r = livePlots.tof.figure.x_range; return [r.start, r.end]") == zoomed
        driver.find_element(By.ID, "image-log").click()
        assert wait_until(lambda: driver.execute_script(
            "const p = livePlots.images.PANEL; return p.bar.color_mapper instanceof"
            " Bokeh.LogColorMapper && p.bar.title"), 5, "a log colour bar") == "counts (log)"
        # the read-out over a bank: bank, row, column, pixel id and counts
        box = run(driver, "frameBox(livePlots.images.PANEL).then(done)")
        left, top, w, h = box["left"], box["top"], box["width"], box["height"]
        driver.execute_script("window.scrollTo(0, 0)")
        pointer((left + w * 2.5 / 32, top + h * 1.5 / 24))  # row 1, column 2
        readout = driver.execute_script(
            "return document.querySelector('#bank-PANEL .readout').textContent")
        assert readout == "PANEL row 1, column 2: pixel 35, counts 3", readout
        # a region dragged from the bank's first pixel to past its far corner
        pointer((left + 1, top + 1), (left + w / 2, top + h / 2),
                (left + w + 30, top + h + 30), press=True)
        wait_until(lambda: driver.find_element(By.ID, "roi-pixels").text == str(24 * 32), 10,
                   "the region over the whole bank")
        assert driver.find_element(By.ID, "roi").get_attribute("value") == "PANEL:0:0:23:31"
        assert driver.find_element(By.ID, "roi-sum").text == str(PANEL.sum())
        outline = driver.execute_script(
            "const o = livePlots.images.PANEL.outline;"
            "return [o.visible, o.left, o.right, o.top, o.bottom]")
        assert outline == [True, 0, 32, 0, 24]
        # the I(d) read-out: d in Å
        box = run(driver, "frameBox(livePlots.dspacing).then(done)")
        pointer((box["left"] + box["width"] / 2, box["top"] + box["height"] / 2))
        readout = driver.execute_script(
            "return document.querySelector('#d-panel .readout').textContent")
        assert readout.startswith("d ") and " Å, PANEL: I " in readout, readout
    finally:
        screenshot(driver, tmp_path, "live_page_interaction.png")


def test_without_a_reduction_its_place_says_so(page):
    from selenium.webdriver.common.by import By

    driver, _ = page(with_reduction=False)
    drawn(driver)
    assert driver.find_element(By.ID, "reduction-missing").is_displayed()
    assert not driver.find_element(By.ID, "reduction-views").is_displayed()
    assert driver.execute_script("return livePlots.dspacing === undefined")
    assert driver.find_element(By.ID, "error").text == ""
