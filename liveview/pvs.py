"""The live view's PVs over PVA (p4p), under <prefix>LIVE:, named as kafka_dae_diagnostics
names its KDAEDIAG: counters. Served from the live view's own PVA server; posted on change."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from p4p.nt import NTScalar
from p4p.server import DynamicProvider, Server
from p4p.server.thread import SharedPV

from liveview.array_pvs import ArrayPVs
from liveview.ca_pvs import CaCounters

# name -> (NTScalar type code, unit)
COUNTERS: dict[str, tuple[str, str]] = {
    "EVENTS": ("l", "events"),
    "MEVENTS": ("d", "Mevents"),
    "COUNTRATE": ("d", "events/s"),
    "GOODFRAMES": ("l", "frames"),
    "RAWFRAMES": ("l", "frames"),
    "GOODUAH": ("d", "uA hour"),
    "RAWUAH": ("d", "uA hour"),
    "PROCESSINGLAG": ("d", "s"),
    "NUMSPECTRA": ("l", ""),
    "NUMPERIODS": ("l", ""),
    "NUMTIMECHANNELS": ("l", ""),
    "START_TIME": ("s", ""),
    "STOP_TIME": ("s", ""),
    "RUNNUMBER": ("s", ""),
    # not KDAEDIAG names: events counted but not binned while the view was overloaded,
    # and event messages still to read (behind the end of the events topic)
    "SKIPPEDEVENTS": ("l", "events"),
    "CONSUMERLAG": ("l", "messages"),
}


# per period (period 1 first), over PVA only: name -> (NTScalar array type code, unit,
# the snapshot's list)
PER_PERIOD: dict[str, tuple[str, str, str]] = {
    "GOODFRAMES_PD": ("al", "frames", "period_frames"),
    "RAWFRAMES_PD": ("al", "frames", "period_raw_frames"),
    "GOODUAH_PD": ("ad", "uA hour", "period_uah"),
    "EVENTS_PD": ("al", "events", "period_events"),
}


def _iso(ns: int | None) -> str:
    if not ns:
        return ""
    try:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):  # past datetime's years: shown as unknown
        return ""


class LivePVs:
    """Owns the PVA server, and the CA server of the counters if given a port
    (start()/close())."""

    def __init__(self, prefix: str, server_conf: dict[str, str],
                 arrays: ArrayPVs | None = None, ca_port: int | None = None,
                 ca_pvdb: dict[str, Any] | None = None,
                 more: dict[str, SharedPV] | None = None) -> None:
        """`ca_pvdb`: more names for the CA server (the DAE's spectra, liveview.dae_ca);
        `more`: more PVA PVs by full name (the live reduction's, liveview.reduction_pvs)."""
        self.prefix = f"{prefix}LIVE:"
        self.arrays = arrays
        self.ca = CaCounters(self.prefix, COUNTERS, ca_port, ca_pvdb) if ca_port else None
        self._conf = server_conf
        self._pvs = {name: SharedPV(nt=NTScalar(code, display=True),
                                    initial={"value": "" if code == "s" else 0,
                                             "display.units": unit})
                     for name, (code, unit) in COUNTERS.items()}
        self._pvs |= {name: SharedPV(nt=NTScalar(code, display=True),
                                     initial={"value": [0], "display.units": unit})
                      for name, (code, unit, _) in PER_PERIOD.items()}
        self._values: dict[str, object] = {}
        self._more = dict(more or {})
        self._server: Server | None = None

    def start(self) -> None:
        named = {self.prefix + n: pv for n, pv in self._pvs.items()} | self._more
        providers: list[object] = [named]
        if self.arrays is not None:
            named |= self.arrays.static()
            # kept here: the server holds the provider weakly, and a collected one answers
            # no search
            self._dynamic = DynamicProvider(f"{self.prefix}spectra", self.arrays)
            providers.append(self._dynamic)
        self._server = Server(providers=providers, conf=self._conf, useenv=False)
        if self.ca is not None:
            self.ca.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.ca is not None:
            self.ca.close()

    def values(self) -> dict[str, object]:
        """The counters as last posted."""
        return dict(self._values)

    def post(self, values: dict[str, object]) -> None:
        now = time.time()
        changed = {n: v for n, v in values.items() if self._values.get(n) != v}
        for name, value in changed.items():
            self._values[name] = value
            self._pvs[name].post(value, timestamp=now)
        if self.ca is not None and changed:
            self.ca.post({n: v for n, v in changed.items() if n in COUNTERS})

    def show(self, snapshot: dict[str, object], run_name: str, n_spectra: int,
             n_channels: int, rate: float, consumer_lag: int = 0) -> None:
        events = int(snapshot["events"])
        last = int(snapshot["last_pulse_ns"])
        self.post({"EVENTS": events, "MEVENTS": round(events / 1e6, 6),
                   "GOODFRAMES": int(snapshot["frames"]), "RAWFRAMES": int(snapshot["raw_frames"]),
                   "GOODUAH": round(float(snapshot["good_uah"]), 6),
                   "RAWUAH": round(float(snapshot["raw_uah"]), 6),
                   "COUNTRATE": round(rate, 1),
                   "PROCESSINGLAG": round(max(0.0, time.time() - last / 1e9), 3) if last else 0.0,
                   "NUMSPECTRA": n_spectra, "NUMTIMECHANNELS": n_channels,
                   "START_TIME": _iso(snapshot["start_ns"]),
                   "STOP_TIME": _iso(snapshot["stop_ns"]), "RUNNUMBER": run_name,
                   "SKIPPEDEVENTS": int(snapshot["skipped"]), "CONSUMERLAG": consumer_lag,
                   "NUMPERIODS": int(snapshot["periods"])}
                  | {name: list(snapshot[key]) for name, (_, _, key) in PER_PERIOD.items()})
