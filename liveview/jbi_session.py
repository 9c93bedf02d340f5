"""One just-bin-it configuration while it counts: its histograms, the time it counts over,
its state, and the hs00/hs01 messages it publishes with just-bin-it's `info` JSON (`id`,
`start`, `stop`, `state`, `last_pulse_time`, `sum`, `diff`, `rate`, and `error_message` in
the ERROR state). Pure: event payloads in, histogram messages out; the Kafka side is
liveview.jbi_service.

A pulse counts if start <= pulse time < stop (datastream.run_window, the rule of the file
writer and the run view). just-bin-it compares Kafka timestamps; the DAE stamps each message
with its pulse time, so the two agree, and a pulse time is exact where a message holds
several pulses."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from streaming_data_types.histogram_hs00 import serialise_hs00
from streaming_data_types.histogram_hs01 import serialise_hs01

from datastream.event_messages import read_stream
from datastream.frames import FrameBook
from datastream.run_window import Window, events_of_pulses, pulses_in_window
from datastream.schemas.pu00 import PulseMetadata
from liveview.jbi_commands import Command
from liveview.jbi_histograms import JbiHistogram, make_histogram

NS_PER_MS = 1_000_000
# with a stop time and no more data, the session finishes this long after the stop by the
# clock (late data still counts until then), as just-bin-it does
STOP_LEEWAY_MS = 5000
SOURCE_NAME = "just-bin-it"  # the hs00 source NICOS and just-bin-it's viewers expect

INITIALISED, COUNTING, FINISHED, ERROR = "INITIALISED", "COUNTING", "FINISHED", "ERROR"


@dataclass
class _Stats:
    sum: int = 0
    diff: int = 0
    rate: float = 0.0
    last_pulse_time: int = 0


class JbiSession:
    def __init__(self, command: Command, now_ms: int) -> None:
        self.command = command
        self.start_ms, self.stop_ms = command.window(now_ms)
        self.window = Window(self.start_ms * NS_PER_MS,
                             self.stop_ms * NS_PER_MS if self.stop_ms is not None else None)
        self.histograms: list[JbiHistogram] = [make_histogram(s) for s in command.histograms]
        self.state = INITIALISED
        self.error_message = ""
        self.skipped = 0  # messages that were not events or could not be read
        self.events = 0
        self._stats = [_Stats() for _ in self.histograms]
        self._published_final = False
        self._frames = FrameBook(self.window)

    @property
    def data_topics(self) -> list[str]:
        return sorted({t for h in self.histograms for t in h.spec.data_topics})

    # -- counting --
    def add(self, topic: str, payload: bytes) -> None:
        """One message of a data topic. Raises on a malformed one (the caller counts it).
        Pulses before the stop still count after FINISHED until the final histograms went
        out (another partition may deliver them a little later)."""
        if self.state == ERROR or self.done:
            return
        ev = read_stream(payload)
        if ev is None:
            self.skipped += 1
            return
        if isinstance(ev, PulseMetadata):  # a frame's pu00: a vetoed frame's events are no data
            self._frames.add_pulse(ev)
            return
        ref = ev.reference_time
        if len(ref) == 0:
            return
        if self.window.stop_ns is not None and np.any(ref >= self.window.stop_ns):
            self.finish()  # counted up to now: the last pulses before the stop are below
        mask = pulses_in_window(ref, self.window)
        mask &= np.fromiter((self._frames.is_good(t) for t in ref.tolist()), bool, len(ref))
        if not mask.any():
            return
        tof, det = np.asarray(ev.time_of_flight), np.asarray(ev.pixel_id)
        taken = events_of_pulses(ev.reference_time_index, len(tof), mask)
        tof, det, source = tof[taken], det[taken], ev.source_name
        pulse = int(ref[mask].max())
        for hist in self.histograms:
            hist.add(pulse, tof, det, source)
        self.events += len(tof)
        if self.state == INITIALISED:
            self.state = COUNTING
        if self.state == FINISHED:
            self._published_final = False  # late pulses before the stop: publish again

    def finish(self) -> None:
        if self.state != ERROR:
            self.state = FINISHED

    def fail(self, message: str) -> None:
        self.state, self.error_message = ERROR, message

    def clear(self) -> None:
        for hist, stats in zip(self.histograms, self._stats, strict=True):
            hist.clear()
            stats.sum = stats.diff = 0
            stats.rate = 0.0

    def check_clock(self, now_ms: int) -> None:
        """Finish once the stop has passed by the clock, with leeway for late data."""
        if (self.stop_ms is not None and self.state in (INITIALISED, COUNTING)
                and now_ms > self.stop_ms + STOP_LEEWAY_MS):
            self.finish()

    # -- publishing --
    @property
    def done(self) -> bool:
        """Finished (or failed) and its last histograms published: nothing more to send."""
        return self.state in (FINISHED, ERROR) and self._published_final

    def info(self, index: int) -> dict[str, object]:
        hist, stats = self.histograms[index], self._stats[index]
        total = hist.total()
        pulse = hist.last_pulse_time
        if pulse != stats.last_pulse_time or total != stats.sum:
            seconds = (pulse - stats.last_pulse_time) / 1e9 if stats.last_pulse_time else 0
            stats.diff = total - stats.sum
            stats.rate = stats.diff / seconds if seconds > 0 else 0.0
            stats.sum, stats.last_pulse_time = total, pulse
        info: dict[str, object] = {"id": hist.spec.id, "start": self.start_ms}
        if self.stop_ms is not None:
            info["stop"] = self.stop_ms
        info |= {"state": self.state, "last_pulse_time": stats.last_pulse_time,
                 "sum": stats.sum, "diff": stats.diff, "rate": stats.rate}
        if self.state == ERROR:
            info["error_message"] = self.error_message
        return info

    def messages(self, now_ns: int) -> list[tuple[str, bytes]]:
        """(topic, hs00/hs01) of every histogram, now; the last ones once finished."""
        if self.done:
            return []
        serialise = serialise_hs01 if self.command.output_schema == "hs01" else serialise_hs00
        out = []
        for i, hist in enumerate(self.histograms):
            out.append((hist.spec.topic, serialise({
                "source": SOURCE_NAME,
                "timestamp": now_ns,
                "current_shape": list(hist.shape),
                "dim_metadata": [{"length": len(b) - 1, "bin_boundaries": b, "unit": unit,
                                  "label": label} for b, unit, label in hist.edges()],
                "data": hist.counts,
                "info": json.dumps(self.info(i)),
            })))
        if self.state in (FINISHED, ERROR):
            self._published_final = True
        return out
