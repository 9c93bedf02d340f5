"""The live page's drawing of a bank too large to send whole, in Debian's headless chromium:
a million-pixel bank arrives summed in blocks, is drawn without overflowing the script, and
a region dragged over it corner to corner names the bank's own first and last rows and
columns. The live view behind the page is a stand-in here (its JSON, nothing else): the
page's part with the real live view is in test_liveview.py."""

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
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.system_tools import headless_chromium

    server = WebServer(make_app(state), "127.0.0.1", free_port())
    server.start()
    driver = headless_chromium()
    try:
        driver.get(server.url)
        wait_until(lambda: driver.execute_script(
            "return +document.getElementById('updates').textContent") > 1, 30,
            "the page to draw the large bank")
        assert driver.find_element(By.ID, "error").text == ""
        scale = driver.find_element(By.CSS_SELECTOR, "#bank-wide .scale").text
        assert "a cell of 3 x 3 pixels" in scale, scale  # 334 x 367 cells
        bank = driver.find_element(By.CSS_SELECTOR, "#images canvas")
        # from its first screen pixel to beyond its far corner (a drag may end outside)
        half_w, half_h = bank.size["width"] // 2, bank.size["height"] // 2
        ActionChains(driver).move_to_element_with_offset(bank, -half_w, -half_h) \
            .click_and_hold().move_to_element_with_offset(bank, half_w + 30, half_h + 30) \
            .release().perform()
        wait_until(lambda: driver.find_element(By.ID, "roi-pixels").text == str(ROWS * COLS),
                   10, "the region over the whole bank")
        assert driver.find_element(By.ID, "roi").get_attribute("value") == \
            f"wide:0:0:{ROWS - 1}:{COLS - 1}"
    finally:
        driver.save_screenshot(str(tmp_path / "large_bank.png"))
        driver.quit()
        server.close()
