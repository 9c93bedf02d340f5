"""The live page: `datastream liveview --http HOST:PORT` serves one small page (Starlette,
uvicorn) that polls /api/live every 250 ms and plots the run, the counters, the total
time-of-flight spectrum, a chosen pixel's spectrum, the detector images, and the spectrum of
a region of interest dragged out on an image (?roi=IMAGE:ROW0:COL0:ROW1:COL1); those two of
one period (?period=N, from 1) or of all; the sample-environment logs; and, when the live
view reduces (liveview.reduction), I(d) per bank, I(2θ, d) and the monitors' I(λ).

The counters are the very values the live view posts as LIVE:* PVs, so the page and
`pvget` never disagree. The plots are BokehJS's, served from the installed `bokeh` wheel's
own files (/lib/...): nothing is fetched from the internet, as beamline networks are often
closed."""

from __future__ import annotations

import asyncio
import gzip
import importlib.metadata
import importlib.util
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import h11
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
PAGE_SCRIPTS = Path(__file__).with_name("page")  # the page's own scripts (/page/NAME.js)

# The plotting library, BokehJS, from the `bokeh` wheel (pinned in setup.cfg), not a copy in
# this repository. Chosen over plotly.js (the `plotly` wheel's plotly.min.js) on what a
# beamline browser pays at each first load, measured in Debian's headless chromium on this
# project's 2-core machine, plots of 1,000 points and a 32 x 32 image, no cache:
#   BokehJS (bokeh.min.js + bokeh-api.min.js): 1.39 MB, 0.39 MB gzipped, drawn in 0.50-0.73 s
#   plotly.js (plotly.min.js, only the full bundle ships in its wheel): 4.8 MB, 1.47 MB
#   gzipped, drawn in 1.38-1.94 s (3 times the script to parse: over the page's 1 s)
# With a warm cache both draw in ~0.3 s. bokeh-api adds the JS plotting API (figure());
# tables, widgets, WebGL and MathJax are not needed and not served.
LIBRARY = "bokeh"
LIBRARY_FILES = ("bokeh.min.js", "bokeh-api.min.js")

# Many slow or idle clients never starve the page: at most MAX_CONNECTIONS at once (uvicorn
# answers 503 past them), an idle keep-alive connection closed after KEEP_ALIVE_S, and one
# that has not sent a whole request's headers within REQUEST_TIMEOUT_S closed too (uvicorn
# waits for headers forever: a few trickling clients would hold every connection).
MAX_CONNECTIONS = 100
KEEP_ALIVE_S = 5
REQUEST_TIMEOUT_S = 5.0
# a query's numbers and region are short: a longer one is refused before it is parsed
MAX_PARAM_CHARS = 256
# the library's files are named by its version in their address, so a browser keeps them
# for a year without asking again; an upgrade changes the address
IMMUTABLE = "public, max-age=31536000, immutable"


# the most cells of one image the page is sent: a bank larger is summed in f x f blocks (its
# PV keeps every pixel). 256k cells is ~2 MB of JSON a poll; a million-pixel bank whole
# would be 7 MB four times a second.
PAGE_IMAGE_CELLS = 256 * 1024


def page_image(counts: np.ndarray, max_cells: int = PAGE_IMAGE_CELLS) -> tuple[np.ndarray, int]:
    """An image for the page: itself, or summed in f x f blocks (the last ones partial) so
    that it has at most max_cells; and f."""
    height, width = counts.shape
    f = 1
    while math.ceil(height / f) * math.ceil(width / f) > max_cells:
        f += 1
    if f == 1:
        return counts, 1
    padded = np.zeros((math.ceil(height / f) * f, math.ceil(width / f) * f), np.uint64)
    padded[:height, :width] = counts
    return padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).sum(axis=(1, 3)), f


def page_entry(name: str, counts: np.ndarray) -> dict[str, object]:
    """One image as the page gets it: `block` pixels a side a cell (1 unless the bank is too
    large to send whole), with the bank's own rows and columns (`rows`, `cols`)."""
    shown, block = page_image(counts)
    return {"name": name, "height": int(shown.shape[0]), "width": int(shown.shape[1]),
            "block": block, "rows": int(counts.shape[0]), "cols": int(counts.shape[1]),
            "counts": shown.ravel().tolist()}


def image_shape(pixels: int, width: int | None) -> tuple[int, int]:
    """(height, width) of the detector image: the configured width, or near square."""
    w = width or max(1, round(math.sqrt(pixels)))
    return math.ceil(pixels / w), w


class Roi(NamedTuple):
    """A region of interest: rows and columns (first..last, inclusive) of one image, as
    the page draws it (a bank in its own shape, or the whole detector)."""
    image: str
    rows: tuple[int, int]
    cols: tuple[int, int]

    @classmethod
    def parse(cls, text: str) -> Roi:
        """IMAGE:ROW0:COL0:ROW1:COL1"""
        parts = text.rsplit(":", 4)
        try:
            r0, c0, r1, c1 = (int(v) for v in parts[1:])
        except ValueError:
            raise ValueError(f"roi {text!r}: expected IMAGE:ROW0:COL0:ROW1:COL1") from None
        return cls(parts[0], (r0, r1), (c0, c1))


def live_state(view: Any, pixel: int | None, logs: Any = None, roi: Roi | None = None,
               period: int | None = None) -> dict[str, object]:
    """What the page shows, from the live view (liveview.service.LiveView) and the
    sample-environment logs (liveview.se_logs.SampleEnvLogs). The pixel's and the ROI's
    spectra are of one period (from 1, as the DAE numbers them) or, with None, of all.
    A bad ROI or period raises ValueError."""
    hist = view.histogram
    snapshot = hist.snapshot()
    now = time.time_ns()
    stop = snapshot["stop_ns"]
    state = ("" if not view.run_name else
             "ENDED" if stop is not None and now >= stop else "RUNNING")
    out: dict[str, object] = {
        "instrument": view.config.name,
        "run": {"number": view.run_name, "title": view.title, "state": state},
        "counters": view.pvs.values(),
        **view.page,  # the spectrum and the images the PVs show, as last published
        "logs": logs.snapshot() if logs is not None else {},
    }
    if period is not None and not 1 <= period <= hist.max_periods:
        raise ValueError(f"period {period}: from 1 to {hist.max_periods}")
    index = None if period is None else period - 1
    if pixel is not None and hist.first_pixel <= pixel < hist.first_pixel + hist.n_pixels:
        out["pixel"] = {"id": pixel, "counts": hist.spectrum(pixel, index).tolist()}
    if roi is not None:
        ids = view.arrays.roi_ids(roi.image, roi.rows, roi.cols)
        out["roi"] = {"image": roi.image, "rows": sorted(roi.rows), "cols": sorted(roi.cols),
                      "pixels": len(ids), "counts": hist.spectrum_of(ids, index).tolist()}
    # which pixel is under the mouse on an image: the page reads out its id
    layouts = {}
    for image in out.get("images", []):  # type: ignore[attr-defined]
        layout = _layouts.get(view.arrays, image["name"])
        if layout is not None:
            layouts[image["name"]] = layout
    out["pixel_layouts"] = layouts
    # the live reduction, when the live view has one (a geometry): as the publisher left it
    # in view.page, else made here from the reduction itself
    reduction = getattr(view, "reduction", None)
    if "reduction" not in out and reduction is not None:
        out["reduction"] = _reductions.get(reduction)
    if logs is not None and callable(getattr(logs, "units", None)):
        out["log_units"] = logs.units()  # EPICS units, as the forwarder's un00 said them
    return out


# the most bins of one curve the page is sent (I(d) may have 100,000): more are summed in
# groups of f neighbours, the edges kept at every f-th (a chart is ~1,000 pixels wide)
PAGE_CURVE_BINS = 4096
# how often the reduction's page form is made again at most (the PVs post every 0.5 s)
REDUCTION_PAGE_S = 0.5


def group_bins(counts: np.ndarray, edges: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """counts summed in groups of f along the last axis (the last group partial), and the
    groups' edges: a coarser histogram of the same events."""
    if f <= 1:
        return counts, edges
    n = counts.shape[-1]
    padded = np.zeros((*counts.shape[:-1], math.ceil(n / f) * f), np.float64)
    padded[..., :n] = counts
    grouped = padded.reshape(*counts.shape[:-1], -1, f).sum(axis=-1)
    return grouped, np.append(edges[:-1:f], edges[-1])


def _factor(n: int, most: int) -> int:
    return max(1, math.ceil(n / most))


def reduction_page(reduced: Any) -> dict[str, object]:
    """What the page plots of the live reduction (a liveview.reduction.Reduced): I(d) of each
    bank and over all, I(2θ, d) as an image (a row per 2θ bin), the monitors' I(λ); long
    axes summed in groups (`group`: bins a point) so that a poll stays small."""
    edges = np.asarray(reduced.edges, np.float64)
    f = _factor(len(edges) - 1, PAGE_CURVE_BINS)
    banks = {name: group_bins(np.asarray(c, np.float64), edges, f)[0].tolist()
             for name, c in reduced.banks.items()}
    image, d_edges = group_bins(np.asarray(reduced.image, np.float64), edges, f)
    # along 2θ (its rows) as well, if the image is still too large for a poll
    rows_f = _factor(image.size, PAGE_IMAGE_CELLS)
    image_t, angles = group_bins(image.T, np.asarray(reduced.two_theta_edges_deg, np.float64),
                                 rows_f)
    lam = np.asarray(reduced.wavelength_edges, np.float64)
    g = _factor(len(lam) - 1, PAGE_CURVE_BINS)
    monitors = {name: group_bins(np.asarray(c, np.float64), lam, g)[0].tolist()
                for name, c in reduced.monitors.items()}
    return {
        "d": {"unit": "Å", "edges": d_edges.tolist(), "group": f, "banks": banks,
              "events": int(reduced.events), "outside": int(reduced.outside),
              "monitor_counts": reduced.monitor_counts},
        "d_two_theta": {"d_edges": d_edges.tolist(), "two_theta_edges": angles.tolist(),
                        "height": int(image_t.shape[1]), "width": int(image_t.shape[0]),
                        "counts": image_t.T.ravel().tolist()},
        "lambda": {"unit": "Å", "edges": group_bins(np.zeros(len(lam) - 1), lam, g)[1].tolist(),
                   "group": g, "monitors": monitors}}


class _ReductionCache:
    """The reduction's page form made at most every REDUCTION_PAGE_S and only when it
    changed (its `version`), for every client: a snapshot copies its histograms."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._made_at = 0.0
        self._page: dict[str, object] | None = None

    def get(self, reduction: Any) -> dict[str, object]:
        key = (id(reduction), int(reduction.version))
        with self._lock:
            now = time.monotonic()
            stale = (self._page is None or self._key is None or key[0] != self._key[0]
                     or (key != self._key and now - self._made_at >= REDUCTION_PAGE_S))
            if stale:
                self._page = reduction_page(reduction.snapshot())
                self._key, self._made_at = key, now
            return self._page


_reductions = _ReductionCache()


def pixel_layout(ids: np.ndarray) -> dict[str, int] | None:
    """How an image's cells name their pixels, when regularly: id = first + row * row_step +
    col * col_step for every cell up to `last` (the whole detector's last cells are -1, no
    pixel). None for an irregular bank: the page then reads out rows and columns only."""
    if ids.ndim != 2 or ids.size == 0 or ids[0, 0] < 0:
        return None
    first = int(ids[0, 0])
    row_step = int(ids[1, 0]) - first if ids.shape[0] > 1 else 0
    col_step = int(ids[0, 1]) - first if ids.shape[1] > 1 else 0
    expected = first + np.add.outer(np.arange(ids.shape[0]) * row_step,
                                    np.arange(ids.shape[1]) * col_step)
    real = ids >= 0
    if not np.array_equal(ids[real], expected[real]):
        return None
    return {"first": first, "row_step": row_step, "col_step": col_step,
            "last": int(ids[real].max())}


class _LayoutCache:
    """pixel_layout() of each image, worked out once: the banks never change shape."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, str], dict[str, int] | None] = {}

    def get(self, arrays: Any, name: str) -> dict[str, int] | None:
        key = (id(arrays), name)
        if key not in self._known:
            try:
                self._known[key] = pixel_layout(np.asarray(arrays.image_ids(name)))
            except ValueError:  # an image the arrays do not know
                self._known[key] = None
            if len(self._known) > 1000:  # bounded, were images ever renamed
                self._known.clear()
        return self._known[key]


_layouts = _LayoutCache()


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity as null (JSON has neither: a sample-environment
    log reading NaN would otherwise fail every answer while it is shown)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _render(content: dict[str, object]) -> bytes:
    try:
        text = json.dumps(content, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(content), allow_nan=False, separators=(",", ":"))
    return text.encode()


def _query(request: Request) -> tuple[int | None, Roi | None, int | None]:
    """(pixel, roi, period) of /api/live; ValueError with the reason for a bad one."""
    numbers: dict[str, int | None] = {}
    for name in ("pixel", "period"):
        raw = request.query_params.get(name, "")
        if len(raw) > MAX_PARAM_CHARS:
            raise ValueError(f"{name}: {len(raw)} characters is no number")
        try:
            numbers[name] = int(raw) if raw else None
        except ValueError:
            raise ValueError(f"{name} {raw!r} is not a number") from None
    raw = request.query_params.get("roi", "")
    if len(raw) > MAX_PARAM_CHARS:
        raise ValueError(f"roi: {len(raw)} characters, at most {MAX_PARAM_CHARS}")
    return numbers["pixel"], Roi.parse(raw) if raw else None, numbers["period"]


def library_dir() -> tuple[Path, str] | None:
    """The installed plotting library's JS folder and version, or None (not installed).
    Found without importing it: its Python side is not needed here."""
    spec = importlib.util.find_spec(LIBRARY)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "server" / "static" / "js"
    return folder, importlib.metadata.version(LIBRARY)


class _Files:
    """Files served whole, read and gzipped once each on first asking (BokehJS's 1.3 MB
    gzip to 0.35 MB in ~30 ms: cheap once, and 4x fewer bytes to every browser)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[bytes, bytes]] = {}

    def get(self, path: Path) -> tuple[bytes, bytes]:
        with self._lock:
            if path not in self._cache:
                raw = path.read_bytes()
                self._cache[path] = raw, gzip.compress(raw, 6)
            return self._cache[path]


def _served(files: _Files, path: Path, request: Request, media_type: str,
            cache: str) -> Response:
    raw, packed = files.get(path)
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type=media_type, headers=headers)
    return Response(raw, media_type=media_type, headers=headers)


def make_app(state: Callable[[int | None, Roi | None, int | None], dict[str, object]]
             ) -> Starlette:
    library = library_dir()
    if library is None:
        log.warning("the live page's plotting library (%s) is not installed: the page "
                    "shows its numbers only", LIBRARY)
    version = library[1] if library else "missing"
    # the library's address names its version: cached for good, a new version a new address
    page = PAGE.read_text().replace("@LIBRARY@", f"lib/{LIBRARY}-{version}")
    files = _Files()
    scripts = {p.name: p for p in PAGE_SCRIPTS.glob("*.js")}  # the only ones served

    async def index(_: Request) -> HTMLResponse:
        # no-cache: the page asks again (a few kB) and so always names the library served
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def lib(request: Request) -> Response:
        name = request.path_params["name"]
        if (library is None or request.path_params["version"] != version
                or name not in LIBRARY_FILES):
            return JSONResponse({"error": "no such file"}, status_code=404)
        return await run_in_threadpool(_served, files, library[0] / name, request,
                                       "text/javascript", IMMUTABLE)

    async def script(request: Request) -> Response:
        path = scripts.get(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "no such file"}, status_code=404)
        # no-cache: revalidated each load, as the page is, so the two always match
        return await run_in_threadpool(_served, files, path, request, "text/javascript",
                                       "no-cache")

    def answer(pixel: int | None, roi: Roi | None, period: int | None) -> bytes:
        return _render(state(pixel, roi, period))

    async def api(request: Request) -> Response:
        try:
            query = _query(request)
            # in a worker thread: sums over the histogram and a few MB of JSON would hold
            # the event loop, and every other client, meanwhile
            body = await run_in_threadpool(answer, *query)
        except ValueError as exc:  # a bad pixel, ROI or period is the asker's: say why
            return JSONResponse({"error": str(exc)[:1000]}, status_code=400)
        return Response(body, media_type="application/json")

    return Starlette(routes=[
        Route("/", index), Route("/api/live", api),
        Route(f"/lib/{LIBRARY}-{{version}}/{{name}}", lib),
        Route("/page/{name}", script)])


def parse_http(value: str) -> tuple[str, int]:
    """HOST:PORT (or just PORT, on 127.0.0.1)."""
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--http {value!r}: expected HOST:PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"--http {value!r}: no such port")
    return host or "127.0.0.1", number


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a whole request's
    headers within REQUEST_TIMEOUT_S of connecting or of its last answer."""

    _request_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _too_slow(self) -> None:
        self._request_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request's headers came
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()


class WebServer:
    """uvicorn in a thread of its own (start()/close())."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", http=_Protocol,
            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_S))
        self._thread = threading.Thread(target=self._server.run, name="live-web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"cannot serve the live page on {self.host}:{self.port} "
                                   "(is the port taken?)")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
