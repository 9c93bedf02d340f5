"""A simulated DAE: neutron event frames to Kafka while a run is counting, as ISIS's DAE
streams them today: per frame one pu00 (period from 0, proton charge in µAh, veto mask) and
then the frame's ev44 messages, at most `max_events_per_message` events each, sorted by time
of flight, all with the frame's key (kafka_event_aggregator's form). A vetoed frame sends its
pu00 alone: it is a raw frame, not a good one, and its neutrons are not data. A dwell
period's frames carry the dwell veto (ioc.beam_model.VETO_BITS).

Frames lie on a fixed grid from the run's start time; a frame belongs to the run iff
start <= frame time < stop, the same rule the file writer applies. The frame time is also the
Kafka timestamp, so the writer finds the run's first frame by offsets-for-times.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import KafkaError, Producer
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.fbschemas.isis_event_info_is84.RunState import (
    RunState as IsisRunState,
)

from datastream.geometry import NS_PER_ANGSTROM_METRE, Geometry, Monitor
from datastream.schemas.pu00 import serialise_pu00
from ioc.beam_model import VETO_BITS, BeamModel, BeamSettings, veto_mask, veto_names
from ioc.dae import DaeCounters, PeriodPlan

log = logging.getLogger(__name__)

# time of flight (microseconds) of a 1 Å neutron over 1 m
_TOF_US_PER_ANGSTROM_METRE = 252.78


@dataclass(frozen=True)
class DaeSettings:
    frame_rate_hz: float = 10.0
    events_per_frame: int = 1000
    first_pixel: int = 1
    pixels: int = 16384
    source_name: str = "DAE"
    flight_path_m: float = 10.0
    # the proton beam on target (ioc.beam_model): its current, the relative jitter of each
    # frame's charge, beam-off spells (on average every `beam_off_every_s` for
    # `beam_off_for_s`; 0: never) and random vetoes (name -> fraction of frames)
    beam_current_ua: float = 40.0
    beam_jitter: float = 0.0
    beam_off_every_s: float = 0.0
    beam_off_for_s: float = 0.0
    vetoes: dict[str, float] = field(default_factory=dict)
    # kafka_event_aggregator's bound on one ev44
    max_events_per_message: int = 100_000
    seed: int | None = None
    # "ev44" (with pu00), or "ev42" for Mantid's live listener (which reads ev42 only), with
    # ISIS's period, run state and proton charge per frame as is84 facility data
    event_schema: str = "ev44"
    # with a geometry (iocBoot/<INST>/geometry.toml): a powder sample with these d-spacings
    # (Å), `background` of the events flat in time, and monitor events per frame as a
    # fraction of the detector's
    d_spacings: tuple[float, ...] = (1.1, 1.6, 2.3)
    background: float = 0.2
    monitor_fraction: float = 0.05
    # hardware periods: frame k of a run counts into period k % periods (pu00's or is84's
    # period_number, from 0; period 1 to IBEX)
    periods: int = 1

    def __post_init__(self) -> None:
        if self.event_schema not in ("ev44", "ev42"):
            raise ValueError(f"event_schema {self.event_schema!r}: ev44 or ev42")
        if not isinstance(self.periods, int) or self.periods < 1:
            raise ValueError(f"periods {self.periods!r}: a whole number, at least 1")
        if self.periods > 8:
            raise ValueError(f"periods = {self.periods}: hardware periods have 8 slots (as "
                             "ISISDAE's); for more, use software periods (NUMPERIODS:SP)")
        if not isinstance(self.max_events_per_message, int) \
                or self.max_events_per_message < 1:
            raise ValueError(f"max_events_per_message {self.max_events_per_message!r}: a "
                             "whole number, at least 1")
        object.__setattr__(self, "vetoes", dict(self.vetoes))
        _ = self.beam  # checks the beam's settings
        object.__setattr__(self, "d_spacings", tuple(float(d) for d in self.d_spacings))
        if not self.d_spacings or min(self.d_spacings) <= 0:
            raise ValueError("d_spacings: at least one, each above 0 Å")
        if not 0 <= self.background <= 1 or not 0 <= self.monitor_fraction <= 1:
            raise ValueError("background and monitor_fraction are fractions (0..1)")

    @property
    def frame_period_ns(self) -> int:
        return round(1e9 / self.frame_rate_hz)

    @property
    def beam(self) -> BeamSettings:
        return BeamSettings(self.beam_current_ua, self.beam_jitter, self.beam_off_every_s,
                            self.beam_off_for_s, self.vetoes)


class EventGenerator:
    """Events of a thermal moderator: Maxwellian-like wavelengths over a spread of flight
    paths, wrapped into the frame. Drawn once into a pool; each frame takes a window of it."""

    def __init__(self, settings: DaeSettings, pool_size: int | None = None) -> None:
        rng = np.random.default_rng(settings.seed)
        n = pool_size or max(4 * settings.events_per_frame, 1 << 18)
        wavelength = rng.gamma(shape=4.0, scale=0.45, size=n) + 0.2
        path = settings.flight_path_m + rng.uniform(-0.5, 1.5, size=n)
        tof_ns = wavelength * path * _TOF_US_PER_ANGSTROM_METRE * 1000.0
        self.time_of_flight = (tof_ns % settings.frame_period_ns).astype(np.int32)
        self.pixel_id = rng.integers(settings.first_pixel, settings.first_pixel + settings.pixels,
                                     size=n, dtype=np.int32)
        self._rng = rng
        self._n = settings.events_per_frame

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        start = int(self._rng.integers(0, len(self.pixel_id) - self._n + 1))
        window = slice(start, start + self._n)
        return self.time_of_flight[window], self.pixel_id[window]


class PowderGenerator(EventGenerator):
    """Events of a powder sample in a real geometry: each lands on a random pixel; most in
    a Bragg peak, λ = 2 d sin θ over the pixel's own flight path (so peaks move in time of
    flight with angle and make arcs on a panel), widened by a 0.3 % resolution; the
    `background` fraction flat over the frame."""

    def __init__(self, settings: DaeSettings, geometry: Geometry,
                 pool_size: int | None = None) -> None:
        rng = np.random.default_rng(settings.seed)
        n = pool_size or max(4 * settings.events_per_frame, 1 << 18)
        ids = geometry.pixel_ids()
        k = rng.integers(0, len(ids), size=n)
        d = rng.choice(np.asarray(settings.d_spacings), size=n)
        wavelength = 2 * d * np.sin(geometry.two_theta()[k] / 2)
        tof = geometry.flight_path_m()[k] * wavelength * NS_PER_ANGSTROM_METRE
        tof *= 1 + 0.003 * rng.standard_normal(n)
        flat = rng.random(n) < settings.background
        tof[flat] = rng.uniform(0, settings.frame_period_ns, size=int(flat.sum()))
        self.time_of_flight = (tof % settings.frame_period_ns).astype(np.int32)
        self.pixel_id = ids[k]
        self._rng = rng
        self._n = settings.events_per_frame


class MonitorGenerator(EventGenerator):
    """A beam monitor's events: the moderator's spectrum over the monitor's flight path."""

    def __init__(self, settings: DaeSettings, monitor: Monitor, source_distance_m: float,
                 pool_size: int = 1 << 16) -> None:
        rng = np.random.default_rng(None if settings.seed is None else settings.seed + 1)
        wavelength = rng.gamma(shape=4.0, scale=0.45, size=pool_size) + 0.2
        path = source_distance_m + monitor.z_m
        self.time_of_flight = (wavelength * path * NS_PER_ANGSTROM_METRE
                               % settings.frame_period_ns).astype(np.int32)
        self.pixel_id = np.full(pool_size, monitor.id, np.int32)
        self._rng = rng
        self._n = min(pool_size, max(1, round(settings.events_per_frame
                                              * settings.monitor_fraction)))


@dataclass
class _Tally:
    """What the DAE counted of the current run (under the DAE's lock)."""

    periods: int = 1
    total: int = 0  # events of good frames
    monitor: int = 0
    good_uah: float = 0.0
    raw_uah: float = 0.0
    good: list[int] = field(default_factory=list)  # per period
    raw: list[int] = field(default_factory=list)
    period_uah: list[float] = field(default_factory=list)
    vetoed: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.good = [0] * self.periods
        self.raw = [0] * self.periods
        self.period_uah = [0.0] * self.periods

    def frame(self, period: int, charge: float, vetos: int, events: int,
              monitor: int) -> None:
        self.raw_uah += charge
        if period < self.periods:
            self.raw[period] += 1
        if vetos:
            self.vetoed.update(veto_names(vetos))
            return
        self.good_uah += charge
        self.total += events
        self.monitor += monitor
        if period < self.periods:
            self.good[period] += 1
            self.period_uah[period] += charge


class SimulatedDae:
    """Owns one thread (started by start(), ended by close()) that emits frames."""

    def __init__(self, producer: Producer, topic: str, settings: DaeSettings,
                 clock: Callable[[], int] = time.time_ns,
                 geometry: Geometry | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._settings = settings
        self._clock = clock
        # with a geometry: a powder in it, and each beam monitor's own stream (its name the
        # source); the monitors' events are not the detector's counts
        self._generator = (PowderGenerator(settings, geometry) if geometry is not None
                           else EventGenerator(settings))
        self._monitors = [(m.name, MonitorGenerator(settings, m, geometry.source_distance_m))
                          for m in (geometry.monitors if geometry is not None else ())]
        self._beam = BeamModel(settings.beam, settings.frame_rate_hz, settings.seed)
        self._cond = threading.Condition()
        self._next_ns: int | None = None  # next frame time while counting
        self._until_ns: int | None = None  # no frame at or after this time
        self._paused_from: int | None = None  # frames at or after this time are vetoed
        self._closed = False
        self._thread: threading.Thread | None = None
        # from the clock, so a restarted DAE never repeats a message id of the one before
        self._message_id = clock() // 1000
        self._frame_key = 0
        self._frames = 0  # frames of the run (raw), which step the hardware periods
        self._delivery_errors = 0
        self._recent: collections.deque[tuple[int, int]] = collections.deque()
        self._plan = PeriodPlan.every_frame(settings.periods)
        self._period = 0  # the current period (from 0) of software periods
        self._tally = _Tally(self._plan.number)
        # the vetoes that stop frames (the rest of the beam's signals are ignored, as a DAE
        # ignores a veto input switched off); the software ones always do
        self._always = 1 << VETO_BITS["pause"] | 1 << VETO_BITS["dwell"]
        self._enabled = self._always | veto_mask(VETO_BITS)

    # -- commands (called by run control; each returns once the DAE is in the new state) --
    def begin(self, start_ns: int, paused: bool = False) -> None:
        with self._cond:
            self._frames = 0
            self._tally = _Tally(self._plan.number)
            self._recent.clear()
            self._next_ns = start_ns
            self._paused_from = start_ns if paused else None
            self._until_ns = None
            self._cond.notify_all()

    # PAUSE is the software veto, as at ISIS: frames go on, each vetoed (a raw frame, its
    # pu00 alone), until RESUME. Each returns once the frames before `at_ns` are made.
    def pause(self, at_ns: int, timeout: float = 30.0) -> None:
        with self._cond:
            self._paused_from = at_ns
            self._cond.notify_all()
        self._catch_up(at_ns, timeout)

    def resume(self, at_ns: int, timeout: float = 30.0) -> None:
        self._catch_up(at_ns, timeout)
        with self._cond:
            self._paused_from = None
            if self._next_ns is None:  # a DAE restored after a restart, not counting yet
                self._next_ns = at_ns
            self._cond.notify_all()

    def _catch_up(self, at_ns: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(
                    lambda: self._next_ns is None or self._next_ns >= at_ns, timeout):
                raise TimeoutError(f"the DAE did not catch up to {at_ns} ns within {timeout}s")

    def end(self, stop_ns: int, timeout: float = 30.0) -> DaeCounters:
        """Stop counting at stop_ns; returns once no frame at or after it will be made.
        Delivering the frames made is flush()'s: counting stops even with the broker down."""
        self._stop_at(stop_ns, timeout)
        return self.counters()

    def flush(self, timeout: float) -> int:
        """Wait for the frames made to be delivered; how many are still not."""
        return self._producer.flush(timeout)

    def restore(self, counters: DaeCounters) -> None:
        """Counters of a run this DAE carries on with after a restart (counted back from
        the events topic, as a real DAE keeps them while its IOC restarts)."""
        with self._cond:
            tally = _Tally(self._plan.number)
            tally.total, tally.monitor = counters.total_counts, counters.monitor_counts
            tally.good_uah, tally.raw_uah = counters.good_uah, counters.raw_uah
            for p in range(tally.periods):
                good, raw, uah, _ = counters.of_period(p + 1)
                tally.good[p], tally.raw[p], tally.period_uah[p] = good, raw, uah
            tally.vetoed.update(dict(counters.vetoed_frames))
            self._tally = tally
            self._frames = counters.raw_frames
            self._recent.clear()

    def _stop_at(self, at_ns: int, timeout: float) -> None:
        with self._cond:
            self._until_ns = at_ns
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._next_ns is None, timeout):
                raise TimeoutError(f"the DAE did not catch up to the stop time within {timeout}s")

    @property
    def periods(self) -> int:
        return self._plan.number

    def set_periods(self, plan: PeriodPlan) -> None:
        """New periods, between runs."""
        with self._cond:
            self._plan = plan
            self._period = min(self._period, plan.number - 1)
            self._tally = _Tally(plan.number)

    def set_vetoes(self, enabled: frozenset[str]) -> None:
        """The vetoes that stop frames from now on (names of ioc.beam_model.VETO_BITS)."""
        mask = veto_mask(enabled)
        with self._cond:
            self._enabled = self._always | mask

    def set_period(self, period: int) -> None:
        """The software period (from 1) that frames count into from now on."""
        with self._cond:
            if self._plan.hardware:
                raise ValueError("the periods are hardware periods: the DAE steps through "
                                 "them itself")
            if not 1 <= period <= self._plan.number:
                raise ValueError(f"period {period}: between 1 and {self._plan.number}")
            self._period = period - 1

    def counters(self) -> DaeCounters:
        with self._cond:
            now = self._clock()
            while self._recent and self._recent[0][0] < now - 1_000_000_000:
                self._recent.popleft()
            rate = float(sum(n for _, n in self._recent))
            t = self._tally
            return DaeCounters(
                t.total, sum(t.good), sum(t.raw), rate, self._delivery_errors, t.good_uah,
                tuple(t.good), tuple(t.period_uah), self._period + 1, t.monitor,
                tuple(f / self._settings.frame_rate_hz for f in t.good),
                self._beam.current_ua if self._next_ns is not None else 0.0,
                t.raw_uah, tuple(t.raw), tuple(sorted(t.vetoed.items())))

    # -- the frame thread --
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="simulated-dae", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        self._producer.flush(10)

    def _run(self) -> None:
        period = self._settings.frame_period_ns
        while True:
            with self._cond:
                if self._closed:
                    return
                frame_ns = self._next_ns
                if frame_ns is None:
                    self._cond.wait(0.5)
                    continue
                if self._until_ns is not None and frame_ns >= self._until_ns:
                    self._next_ns = None
                    self._cond.notify_all()
                    continue
                wait_ns = frame_ns - self._clock()
                if wait_ns > 0:
                    self._cond.wait(min(wait_ns / 1e9, 0.5))
                    continue
                in_period, dwell = self._plan.of_frame(self._frames, self._period)
                paused = self._paused_from is not None and frame_ns >= self._paused_from
            try:
                charge, signals = self._beam.frame()
                vetos = signals & self._enabled
                if dwell:
                    vetos |= 1 << VETO_BITS["dwell"]
                if paused:
                    vetos |= 1 << VETO_BITS["pause"]
                n_events, n_monitor = self._emit(frame_ns, in_period, charge, vetos)
            except Exception:
                # a frame that cannot be made or sent is not counted, and the DAE goes on
                # with the next: a thread that ended here would stop every later run's data
                self._frame_failed(frame_ns, period)
                continue
            with self._cond:
                if self._next_ns == frame_ns:
                    self._next_ns = frame_ns + period
                    self._cond.notify_all()  # pause and resume wait for the frames made
                self._frames += 1
                self._tally.frame(in_period, charge, vetos, n_events, n_monitor)
                self._recent.append((frame_ns, n_events))

    def _frame_failed(self, frame_ns: int, period_ns: int) -> None:
        with self._cond:
            self._delivery_errors += 1
            failures = self._delivery_errors
            if self._next_ns == frame_ns:
                self._next_ns = frame_ns + period_ns
                self._cond.notify_all()
        if failures <= 3 or failures % 1000 == 0:  # not a traceback every frame
            log.exception("frame at %d ns not sent (%d frames not delivered so far)",
                          frame_ns, failures)

    def _emit(self, frame_ns: int, period: int, charge: float, vetos: int) -> tuple[int, int]:
        """One frame: its pu00, then (unless vetoed: a dwell period's frames are) the
        detector's events and each monitor's. Returns how many of each were sent."""
        # one key a frame, so its messages stay in order: kafka_event_aggregator's frame
        # counter, 8 bytes big-endian
        self._frame_key += 1
        key = self._frame_key.to_bytes(8, "big")
        ev42 = self._settings.event_schema == "ev42"
        if not ev42:
            self._message_id += 1
            self._produce(serialise_pu00(self._settings.source_name, self._message_id,
                                         frame_ns, vetos, period, charge), frame_ns, key)
        if vetos:
            self._producer.poll(0)
            return 0, 0
        tof, pixel = self._generator.frame()
        self._send(self._settings.source_name, frame_ns, period, charge, tof, pixel, key)
        monitor_events = 0
        for name, monitor in self._monitors:
            m_tof, m_pixel = monitor.frame()
            self._send(name, frame_ns, period, charge, m_tof, m_pixel, key)
            monitor_events += len(m_tof)
        self._producer.poll(0)
        return len(tof), monitor_events

    def _send(self, source: str, frame_ns: int, period: int, charge: float, tof: np.ndarray,
              pixel: np.ndarray, key: bytes) -> None:
        if self._settings.event_schema == "ev42":
            self._message_id += 1
            payload = serialise_ev42(source, self._message_id, frame_ns, tof, pixel,
                                     isis_specific={"period_number": period,
                                                    "run_state": IsisRunState.RUNNING,
                                                    "proton_charge": charge})
            self._produce(payload, frame_ns, key)
            return
        order = np.argsort(tof, kind="stable")  # sorted by time of flight, as ISIS sends
        tof, pixel = tof[order], pixel[order]
        chunk = self._settings.max_events_per_message
        ref, index = np.array([frame_ns], np.int64), np.zeros(1, np.int32)
        for start in range(0, max(len(tof), 1), chunk):
            self._message_id += 1
            self._produce(serialise_ev44(source, self._message_id, ref, index,
                                         tof[start:start + chunk], pixel[start:start + chunk]),
                          frame_ns, key)

    def _produce(self, payload: bytes, frame_ns: int, key: bytes) -> None:
        while True:
            try:
                self._producer.produce(self._topic, payload, key=key,
                                       timestamp=frame_ns // 1_000_000,
                                       on_delivery=self._on_delivery)
                return
            except BufferError:
                # queue full: wait for deliveries rather than drop counted events
                self._producer.poll(0.05)

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            log.error("event frame not delivered: %s", err)
            with self._cond:
                self._delivery_errors += 1
