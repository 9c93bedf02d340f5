"""The live page: `datastream liveview --http HOST:PORT` serves one small page (Starlette,
uvicorn) that polls /api/live every 250 ms and draws the run, the counters, the total
time-of-flight spectrum, a chosen pixel's spectrum, the detector images, and the spectrum of
a region of interest dragged out on an image (?roi=IMAGE:ROW0:COL0:ROW1:COL1); those two of
one period (?period=N, from 1) or of all.

The counters are the very values the live view posts as LIVE:* PVs, so the page and
`pvget` never disagree. The page has no dependency to fetch: beamline networks are often
closed."""

from __future__ import annotations

import asyncio
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

# Many slow or idle clients never starve the page: at most MAX_CONNECTIONS at once (uvicorn
# answers 503 past them), an idle keep-alive connection closed after KEEP_ALIVE_S, and one
# that has not sent a whole request's headers within REQUEST_TIMEOUT_S closed too (uvicorn
# waits for headers forever: a few trickling clients would hold every connection).
MAX_CONNECTIONS = 100
KEEP_ALIVE_S = 5
REQUEST_TIMEOUT_S = 5.0
# a query's numbers and region are short: a longer one is refused before it is parsed
MAX_PARAM_CHARS = 256


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
    return out


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


def make_app(state: Callable[[int | None, Roi | None, int | None], dict[str, object]]
             ) -> Starlette:
    page = PAGE.read_text()

    async def index(_: Request) -> HTMLResponse:
        return HTMLResponse(page)

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

    return Starlette(routes=[Route("/", index), Route("/api/live", api)])


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
