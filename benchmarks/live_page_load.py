"""The live page's cold load in Debian's headless chromium (issue 21: page load <= 1 s): a
fresh browser each time (nothing of the plotting library cached), from navigating to the
page until its first plots are drawn (the page's own `window.pageDrawn`), the page served by
the live view's web server with the system test's stand-in state (tests/system/
test_live_page.py). Figures: each load in ms, their median and worst, beside the goal; and
the library's bytes on the wire against unpacked (it is served gzipped from the bokeh
wheel).

    .venv/bin/python benchmarks/live_page_load.py [--loads 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' stand-in

from liveview.web import WebServer, make_app
from tests.conftest import free_port
from tests.system.test_live_page import PAGE_LOAD_S, drawn, stand_in
from tests.system_tools import headless_chromium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    server = WebServer(make_app(stand_in(True)), "127.0.0.1", free_port())
    server.start()
    times, sizes = [], []
    try:
        for _ in range(args.loads):
            driver = headless_chromium()
            try:
                driver.set_window_size(1400, 2600)
                driver.get(server.url)
                times.append(drawn(driver))
                sizes = driver.execute_script(
                    "return performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/lib/'))"
                    ".map(e => [e.name.split('/').pop(), e.encodedBodySize,"
                    " e.decodedBodySize])")
            finally:
                driver.quit()
    finally:
        server.close()
    goal = PAGE_LOAD_S * 1000
    print(f"cold loads of the live page, ms to its first plots: "
          f"{', '.join(f'{t:.0f}' for t in times)}")
    print(f"{'':24} {'ms':>6}   goal {goal:.0f} ms")
    for name, value in (("median", statistics.median(times)), ("worst", max(times))):
        print(f"{name:24} {value:6.0f}   {'met' if value <= goal else 'NOT met'}")
    for name, wire, body in sizes:
        print(f"library {name}: {wire / 1e6:.2f} MB on the wire, {body / 1e6:.2f} MB unpacked")


if __name__ == "__main__":
    main()
