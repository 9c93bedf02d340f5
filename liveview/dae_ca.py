"""The ISIS DAE's spectrum PVs over Channel Access, served by the live view (the one source of
truth for spectra) under `<prefix>DAE:`, the run-control IOC's prefix: clients (genie_python's
get_spectrum, ibex_bluesky_core's DaeSpectra) list both CA ports and find each name on one.

- `DAE:SPEC:<period>:<spectrum>:X`, `:XE`, `:Y`, `:YC` (and `DAE:SPEC:<spectrum>:<axis>`,
  period 1), each with `.NORD` and `.EGU`: DBR_FLOAT arrays (ophyd-async reads an
  Array1D[float32] only from a native FLOAT) of NELM max(8000, channels + 1) as ISISDAE's,
  served whole (past `.NORD`, X and XE repeat their last value, Y and YC are 0, as
  ISISDAE serves them). Made when a client searches for the name: 16k spectra cost
  nothing until asked. Period 0 is the current period. Spectra are the run's: its pl72's
  detector-spectrum map sums pixels into them (liveview.spectrum_map, dae_arrays), and each
  beam monitor of its isis_histogram config is the spectrum the file numbers it
  (liveview.monitor_spectra), with the counts its monitor_hist_<i>/data has.
- `DAE:NUMSPECTRA` (the run's map's, the monitors' spectra past it included),
  `DAE:NUMTIMECHANNELS` (DBR_LONG).
- `DAE:SPECINTEGRALS` (DBR_LONG, [period][spectrum 0..NUMSPECTRA]) with `.NORD`.
- `DAE:SPECDATA` (DBR_LONG, [period][spectrum 0..NUMSPECTRA][bin 0..NTC]) with `.NORD`, and
  `.PROC`: a put recomputes it (as processing the ISISDAE record does); read it after.

Values are computed when read, so a caget sees the histogram now and not the last post; the
publisher's update() posts those a client monitors, at its pace (0.5 s). Everything runs on
the CA server's event loop; update() only hands it work."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from caproto import ChannelData, ChannelInteger

from datastream.ca_lengths import serve_native_counts
from liveview import dae_arrays
from liveview.ca_access import ReadOnlyFloat, ReadOnlyInteger, ReadOnlyString
from liveview.spectrum_map import SpectrumMap

log = logging.getLogger(__name__)

SPEC_NAME = re.compile(r"SPEC:(?:(\d+):)?(\d+):(XE|X|YC|Y)(?:\.(NORD|EGU))?")
SPEC_NELM = 8000  # ISISDAE's
SPECINTEGRALS_NELM = 1_000_000
SPECDATA_NELM = 5_000_000
UNITS = {"X": "us", "XE": "us", "Y": "cnt /us", "YC": "cnt"}
# after a run's stop, a read waits up to this long for the consumer to reach the end of the
# events topic, so that it shows all of the run's events
SETTLE_S = 2.0
SETTLE_POLL_S = 0.02

Submit = Callable[[Coroutine[Any, Any, None]], "concurrent.futures.Future[None] | None"]


def parse_spec(name: str) -> tuple[int, int, str, str] | None:
    """(period as named, 0 the current; spectrum; axis; field or "") of a spectrum PV's name
    after `DAE:`; None if it is not one. The short form SPEC:<spectrum>:<axis> is period 1."""
    m = SPEC_NAME.fullmatch(name)
    if m is None:
        return None
    return int(m[1]) if m[1] is not None else 1, int(m[2]), m[3], m[4] or ""


class _Computed:
    """A channel whose value is computed when read or first subscribed to; `post()` sends a
    changed value to its monitors."""

    def __init__(self, *, compute: Callable[[], Any],
                 settle: Callable[[], Coroutine[Any, Any, None]] | None = None,
                 offload: bool = False, hold: bool = True, **kwargs: Any) -> None:
        """`settle`: awaited before computing a read; `offload`: compute in a worker thread
        (a whole-histogram sum would stall every other client meanwhile); `hold=False`: an
        unwatched channel drops its value after a read (16k spectra read once hold nothing)."""
        super().__init__(**kwargs)
        self.compute, self.settle, self.offload, self.hold = compute, settle, offload, hold
        self._placeholder = self._data["value"]
        self._warned_long = False

    async def _fresh(self, settle: bool = True) -> Any:
        if settle and self.settle is not None:
            await self.settle()
        if self.offload:
            value = await asyncio.get_running_loop().run_in_executor(None, self.compute)
        else:
            value = self.compute()
        if isinstance(value, np.ndarray) and len(value) > self.max_length:
            if not self._warned_long:  # said once: a client sees it as NORD == NELM
                self._warned_long = True
                log.warning("a DAE array of %d elements is cut to its NELM %d", len(value),
                            self.max_length)
            value = value[:self.max_length]
        return value

    async def _take(self, value: Any) -> None:
        self._data["value"] = self.preprocess_value(value)
        self._content.clear()  # subscribe() caches the converted value
        await self.write_metadata(publish=False, timestamp=time.time())

    async def read(self, data_type: Any) -> Any:
        await self._take(await self._fresh())
        answer = await self._read(data_type)
        if not self.hold and not self.watched:
            self._data["value"] = self._placeholder
        return answer

    async def subscribe(self, queue: Any, sub_spec: Any, sub: Any) -> None:
        await self._take(await self._fresh())
        await super().subscribe(queue, sub_spec, sub)  # type: ignore[misc]

    async def unsubscribe(self, queue: Any, sub_spec: Any) -> None:
        await super().unsubscribe(queue, sub_spec)  # type: ignore[misc]
        if not self.hold and not self.watched:
            self._data["value"] = self._placeholder

    @property
    def watched(self) -> bool:
        """Whether a client monitors it."""
        return any(specs for syncs in self._queues.values()
                   for types in syncs.values() for specs in types.values())

    async def post(self) -> None:
        value = await self._fresh(settle=False)
        if not np.array_equal(np.asarray(value), np.asarray(self.value)):
            await self.write(value, verify_value=False)


# every channel here is read-only to clients (liveview.ca_access) but `.PROC`
class LiveFloat(_Computed, ReadOnlyFloat):
    pass


class LiveInteger(_Computed, ReadOnlyInteger):
    pass


class _Process(ChannelInteger):
    """A record's `.PROC`: a put of any value runs `process` (the put completes after it).
    The one channel here clients may write."""

    def __init__(self, process: Callable[[], Coroutine[Any, Any, None]], **kwargs: Any):
        super().__init__(value=0, **kwargs)
        self.process = process

    async def verify_value(self, data: Any) -> Any:
        await self.process()
        return 0


class SpectraPvdb(dict):
    """A caproto pvdb that makes a spectrum's channels when a client first searches for one of
    them (caproto's Context looks the whole name up first, `.NORD` and all)."""

    def __init__(self, owner: DaeSpectra) -> None:
        super().__init__()
        self.owner = owner

    def __missing__(self, name: str) -> ChannelData:
        made = self.owner.make_spectrum(name)
        if made is None:
            raise KeyError(name)
        self.update(made)
        return made[name]


class DaeSpectra:
    """The `DAE:` spectrum PVs of a live view: `pvdb` for its CA server; `serve_with(submit)`
    once that server runs (submit schedules a coroutine on its loop); `update()` from the
    publisher posts what clients monitor."""

    def __init__(self, prefix: str, histogram: Callable[[], Any], n_spectra: int,
                 max_periods: int, caught_up: Callable[[], bool] | None = None,
                 spectra: Callable[[], SpectrumMap] | None = None) -> None:
        """`histogram`: the live view's current RunHistogram (a new one on rebinning);
        `n_spectra`: the most spectra a run has, as a rule (the pixels): it sizes
        SPECINTEGRALS; `caught_up`: False while counts may still be missing after a run's
        stop; `spectra`: the current run's spectrum map (default: one a pixel, NUMSPECTRA
        `n_spectra`)."""
        self.prefix = f"{prefix}DAE:"
        self.histogram, self.n_spectra, self.max_periods = histogram, n_spectra, max_periods
        self.caught_up = caught_up or (lambda: True)
        if spectra is None:
            hist = histogram()
            one = SpectrumMap.one_a_pixel(hist.first_pixel, hist.n_pixels)
            one = dataclasses.replace(one, n_spectra=n_spectra)
            spectra = lambda: one  # noqa: E731
        self.spectra = spectra
        self.pvdb = SpectraPvdb(self)
        self._computed: list[_Computed] = []
        self._submit: Submit | None = None
        self._pending: concurrent.futures.Future[None] | None = None
        self._warned_specdata = False
        self._make_static()

    # -- names --
    def _make_static(self) -> None:
        p = self.prefix
        static: dict[str, ChannelData] = {
            p + "NUMSPECTRA": LiveInteger(compute=lambda: self.spectra().n_spectra, value=0),
            p + "NUMTIMECHANNELS": LiveInteger(
                compute=lambda: self.histogram().channels.channels, value=0)}
        self._integrals_nelm = max(SPECINTEGRALS_NELM, (self.n_spectra + 1) * self.max_periods)
        static[p + "SPECINTEGRALS"] = LiveInteger(
            compute=self._integrals, settle=self.settle, offload=True,
            value=np.zeros(1, np.int32), max_length=self._integrals_nelm, units="cnt")
        static[p + "SPECINTEGRALS.NORD"] = LiveInteger(compute=self._integrals_nord,
                                                       settle=self.settle, value=0)
        self.specdata = ReadOnlyInteger(value=np.zeros(1, np.int32), max_length=SPECDATA_NELM,
                                        units="cnt")
        self.specdata_nord = ReadOnlyInteger(value=1)
        static |= {p + "SPECDATA": self.specdata, p + "SPECDATA.NORD": self.specdata_nord,
                   p + "SPECDATA.PROC": _Process(self.process_specdata)}
        serve_native_counts(static)
        self._computed += [c for c in static.values() if isinstance(c, _Computed)]
        self.pvdb.update(static)

    def make_spectrum(self, name: str) -> dict[str, ChannelData] | None:
        """A spectrum PV's channels (value, `.NORD`, `.EGU`) by full name, if `name` is one of
        them and names a period and spectrum the live view has."""
        if not name.startswith(self.prefix):
            return None
        parsed = parse_spec(name[len(self.prefix):])
        if parsed is None:
            return None
        period, spectrum, axis, _ = parsed
        histogram = self.histogram()
        if not 0 <= period <= self.max_periods:
            return None
        # the current run's spectra; one made for an earlier run's reads as zeros if this
        # run has no such spectrum
        if not 0 <= spectrum <= self.spectra().last:
            return None
        base = self.prefix + name[len(self.prefix):].split(".")[0]
        counts = axis in ("Y", "YC")
        nelm = max(SPEC_NELM, histogram.channels.channels + 1)
        value = LiveFloat(
            compute=lambda: dae_arrays.padded(dae_arrays.spectrum_value(
                self.histogram(), self.spectra(), period, spectrum, axis), nelm, axis),
            settle=self.settle if counts else None, hold=False,
            value=np.zeros(1, np.float32), units=UNITS[axis], max_length=nelm)
        nord = LiveInteger(
            compute=lambda: min(dae_arrays.spectrum_length(self.histogram(), axis),
                                value.max_length), value=0)
        made: dict[str, ChannelData] = {base: value, base + ".NORD": nord,
                                        base + ".EGU": ReadOnlyString(value=UNITS[axis])}
        serve_native_counts({k: v for k, v in made.items() if k != base})
        self._computed += [value, nord]
        return made if name in made else None

    # -- values --
    def _periods(self) -> int:
        """NUMPERIODS: the periods the run has counted into (at least one)."""
        return max(1, int(self.histogram().snapshot()["periods"]))

    def _integrals(self) -> np.ndarray:
        return dae_arrays.spec_integrals(self.histogram(), self.spectra(), self._periods(),
                                         self._integrals_nelm)

    def _integrals_nord(self) -> int:
        return min(dae_arrays.integrals_length(self.spectra().n_spectra, self._periods()),
                   self._integrals_nelm)

    def _specdata(self) -> np.ndarray:
        histogram, spectra = self.histogram(), self.spectra()
        periods = self._periods()
        full = dae_arrays.specdata_length(spectra.n_spectra, histogram.channels.channels,
                                          periods)
        if full > SPECDATA_NELM and not self._warned_specdata:
            self._warned_specdata = True
            log.warning("DAE:SPECDATA: %d periods x %d spectra x %d bins is %d elements, over "
                        "its %d: cut (said once)", periods, spectra.n_spectra + 1,
                        histogram.channels.channels + 1, full, SPECDATA_NELM)
        return dae_arrays.spec_data(histogram, spectra, periods, SPECDATA_NELM)

    async def process_specdata(self) -> None:
        """`DAE:SPECDATA.PROC`: SPECDATA and its NORD recomputed from the histogram now."""
        await self.settle()
        value = await asyncio.get_running_loop().run_in_executor(None, self._specdata)
        await self.specdata.write(value)
        await self.specdata_nord.write(len(value))

    async def settle(self) -> None:
        """Wait (up to SETTLE_S) until the live view has read the events topic to its end
        since the run's stop, so that a read after the stop shows all of the run."""
        deadline = time.monotonic() + SETTLE_S
        while not self.caught_up() and time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_POLL_S)

    # -- posting --
    def serve_with(self, submit: Submit) -> None:
        self._submit = submit

    def update(self) -> None:
        """Post the monitored channels' new values (from the publisher's thread). A post still
        under way is not queued behind: the next update sends the values then."""
        if self._submit is None or (self._pending is not None and not self._pending.done()):
            return
        self._pending = self._submit(self._post_watched())

    async def _post_watched(self) -> None:
        for channel in list(self._computed):
            if channel.watched:
                try:
                    await channel.post()
                except Exception:  # one channel's failure never stops the others' posts
                    log.exception("posting a DAE spectrum PV failed")
