"""The live page's drawing of a bank too large to send whole, in Debian's headless chromium:
a million-pixel bank arrives summed in blocks, is drawn without overflowing the script, and
a region dragged over it from its first screen pixel to past its far corner names the
bank's own rows and columns under the drag, to its last. The live view behind the page is
a stand-in here (its JSON, nothing else): the page's part with the real live view is in
test_liveview.py."""

from __future__ import annotations

import numpy as np
import pytest

from liveview.web import WebServer, make_app, page_entry
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.system

ROWS, COLS = 1000, 1100  # 1.1 M pixels


def state(pixel, roi, period) -> dict[str, object]:
    counts = np.add.outer(np.arange(ROWS), np.arange(COLS)).astype(np.uint32)
    out: dict[str, object] = {
        "instrument": "BIG", "run": {"number": "00000001", "title": "", "state": "RUNNING"},
        "counters": {"EVENTS": int(counts.sum())}, "logs": {},
        "tof": {"edges": [0.0, 1.0], "counts": [int(counts.sum())]},
        "images": [page_entry("wide", counts)]}
    if roi is not None:
        (r0, r1), (c0, c1) = sorted(roi.rows), sorted(roi.cols)
        out["roi"] = {"image": roi.image, "rows": [r0, r1], "cols": [c0, c1],
                      "pixels": (r1 - r0 + 1) * (c1 - c0 + 1), "counts": [1]}
    return out


def test_a_million_pixel_bank_is_drawn_and_a_region_names_its_own_pixels(tmp_path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    from tests.system_tools import headless_chromium

    server = WebServer(make_app(state), "127.0.0.1", free_port())
    server.start()
    driver = headless_chromium()
    try:
        driver.set_window_size(1400, 2600)  # the whole page in view, the drag's end too
        driver.get(server.url)
        wait_until(lambda: driver.execute_script(
            "return +document.getElementById('updates').textContent") > 1, 30,
            "the page to draw the large bank")
        assert driver.find_element(By.ID, "error").text == ""
        scale = driver.find_element(By.CSS_SELECTOR, "#bank-wide .scale").text
        assert "a cell of 3 x 3 pixels" in scale, scale  # 334 x 367 cells
        # the plot's image is the cells, on the bank's own rows and columns
        shape, x_end, y_start = driver.execute_script(
            "const p = livePlots.images.wide;"
            "return [Array.from(p.source.data.image[0].shape), p.figure.x_range.end,"
            "        p.figure.y_range.start]")
        assert shape == [334, 367] and x_end == 367 * 3 and y_start == 334 * 3
        box = driver.execute_async_script(
            "frameBox(livePlots.images.wide).then(arguments[arguments.length - 1])")
        driver.execute_script("window.scrollTo(0, 0)")
        # from its first screen pixel to beyond its far corner (a drag may end outside)
        left, top = int(box["left"]) + 1, int(box["top"]) + 1
        drag = ActionBuilder(driver)
        drag.pointer_action.move_to_location(left, top).pointer_down()
        drag.pointer_action.move_to_location(left + 50, top + 50)
        drag.pointer_action.move_to_location(int(box["left"] + box["width"]) + 30,
                                             int(box["top"] + box["height"]) + 30).pointer_up()
        drag.perform()
        # the first row and column those under the drag's start (a screen pixel here is
        # ~5 of the bank's), the last ones the bank's own: the drag ended past its corner
        r0 = int((top - box["top"]) / box["height"] * 334 * 3)
        c0 = int((left - box["left"]) / box["width"] * 367 * 3)
        pixels = (ROWS - r0) * (COLS - c0)
        wait_until(lambda: driver.find_element(By.ID, "roi-pixels").text == str(pixels),
                   10, "the region to the bank's far corner")
        assert driver.find_element(By.ID, "roi").get_attribute("value") == \
            f"wide:{r0}:{c0}:{ROWS - 1}:{COLS - 1}"
        # no reduction here: its place says so
        assert driver.find_element(By.ID, "reduction-missing").is_displayed()
    finally:
        path = tmp_path / "large_bank.png"
        driver.save_screenshot(str(path))
        print(f"screenshot of the live page: {path}")
        driver.quit()
        server.close()
