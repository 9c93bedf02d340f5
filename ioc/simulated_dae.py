"""A simulated DAE: neutron event frames (ev44) to Kafka while a run is counting.

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
from dataclasses import dataclass

import numpy as np
from confluent_kafka import KafkaError, Producer
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.fbschemas.isis_event_info_is84.RunState import (
    RunState as IsisRunState,
)

from datastream.geometry import NS_PER_ANGSTROM_METRE, Geometry, Monitor

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
    # proton beam current on target, for the good-charge counter (GOODUAH)
    beam_current_ua: float = 40.0
    seed: int | None = None
    # "ev44", or "ev42" for Mantid's live listener (which reads ev42 only), with ISIS's
    # period, run state and proton charge per frame as is84 facility data
    event_schema: str = "ev44"
    # with a geometry (iocBoot/<INST>/geometry.toml): a powder sample with these d-spacings
    # (Å), `background` of the events flat in time, and monitor events per frame as a
    # fraction of the detector's
    d_spacings: tuple[float, ...] = (1.1, 1.6, 2.3)
    background: float = 0.2
    monitor_fraction: float = 0.05
    # hardware periods: frame k of a run counts into period k % periods (is84 period_number,
    # from 0; period 1 to IBEX). ev44 has no period field: ISIS sends periods in pu00
    # messages, which ess-streaming-data-types does not provide, so more than one period
    # needs ev42
    periods: int = 1

    def __post_init__(self) -> None:
        if self.event_schema not in ("ev44", "ev42"):
            raise ValueError(f"event_schema {self.event_schema!r}: ev44 or ev42")
        if not isinstance(self.periods, int) or self.periods < 1:
            raise ValueError(f"periods {self.periods!r}: a whole number, at least 1")
        if self.periods > 8:
            raise ValueError(f"periods = {self.periods}: hardware periods have 8 slots (as "
                             "ISISDAE's); for more, use software periods (NUMPERIODS:SP)")
        if self.periods > 1 and self.event_schema != "ev42":
            raise ValueError(f"periods = {self.periods} needs event_schema = \"ev42\": ev44 "
                             "carries no period")
        object.__setattr__(self, "d_spacings", tuple(float(d) for d in self.d_spacings))
        if not self.d_spacings or min(self.d_spacings) <= 0:
            raise ValueError("d_spacings: at least one, each above 0 Å")
        if not 0 <= self.background <= 1 or not 0 <= self.monitor_fraction <= 1:
            raise ValueError("background and monitor_fraction are fractions (0..1)")

    @property
    def frame_period_ns(self) -> int:
        return round(1e9 / self.frame_rate_hz)


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


@dataclass(frozen=True)
class DaeCounters:
    total_counts: int = 0
    good_frames: int = 0
    raw_frames: int = 0
    count_rate: float = 0.0  # events per second over the last second of frames
    delivery_errors: int = 0
    good_uah: float = 0.0  # proton charge on target during good frames, micro-amp hours
    # per period, period 1 first (ISISDAE's _PD counters are of the current period)
    period_good_frames: tuple[int, ...] = (0,)
    period_good_uah: tuple[float, ...] = (0.0,)
    period: int = 1  # the period frames count into now (software periods: PERIOD:SP)
    monitor_counts: int = 0  # the beam monitors' events
    period_seconds: tuple[float, ...] = (0.0,)  # time counted in each period
    beam_current_ua: float = 0.0  # on target now (0 while not counting)


@dataclass(frozen=True)
class PeriodPlan:
    """Which period each frame counts into. Software periods (`hardware` empty): the current
    period, which PERIOD:SP chooses. Hardware periods: the DAE steps through `hardware`, each
    (period from 0, frames, dwell) for its frames, then again; a dwell period's frames send
    no events."""

    number: int = 1
    hardware: tuple[tuple[int, int, bool], ...] = ()

    @classmethod
    def every_frame(cls, periods: int) -> PeriodPlan:
        """[dae] periods = N: frame k of a run in period k mod N."""
        if periods <= 1:
            return cls()
        return cls(periods, tuple((p, 1, False) for p in range(periods)))

    def of_frame(self, frame: int, current: int) -> tuple[int, bool]:
        """(period from 0, dwell) of a run's frame `frame` (from 0)."""
        if not self.hardware:
            return current, False
        cycle = sum(n for _, n, _ in self.hardware)
        k = frame % cycle
        for period, n, dwell in self.hardware:
            if k < n:
                return period, dwell
            k -= n
        raise AssertionError("unreachable: k < cycle")


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
        # µAh on target in one frame, the same figure GOODUAH sums
        self._frame_charge_uah = settings.beam_current_ua / settings.frame_rate_hz / 3600.0
        self._cond = threading.Condition()
        self._next_ns: int | None = None  # next frame time while counting
        self._until_ns: int | None = None  # no frame at or after this time
        self._closed = False
        self._thread: threading.Thread | None = None
        # from the clock, so a restarted DAE never repeats a message id of the one before
        self._message_id = clock() // 1000
        self._total = 0
        self._frames = 0
        self._delivery_errors = 0
        self._recent: collections.deque[tuple[int, int]] = collections.deque()
        self._plan = PeriodPlan.every_frame(settings.periods)
        self._period = 0  # the current period (from 0) of software periods
        self._period_frames = [0] * self._plan.number
        self._monitor_counts = 0

    # -- commands (called by run control; each returns once the DAE is in the new state) --
    def begin(self, start_ns: int, paused: bool = False) -> None:
        with self._cond:
            self._total = self._frames = self._monitor_counts = 0
            self._period_frames = [0] * self._plan.number
            self._recent.clear()
            self._next_ns = None if paused else start_ns
            self._until_ns = None
            self._cond.notify_all()

    def pause(self, at_ns: int, timeout: float = 30.0) -> None:
        self._stop_at(at_ns, timeout)

    def resume(self, at_ns: int) -> None:
        with self._cond:
            self._next_ns = at_ns
            self._until_ns = None
            self._cond.notify_all()

    def end(self, stop_ns: int, timeout: float = 30.0) -> DaeCounters:
        """Stop counting at stop_ns; returns once no frame at or after it will be made.
        Delivering the frames made is flush()'s: counting stops even with the broker down."""
        self._stop_at(stop_ns, timeout)
        return self.counters()

    def flush(self, timeout: float) -> int:
        """Wait for the frames made to be delivered; how many are still not."""
        return self._producer.flush(timeout)

    def restore(self, total_counts: int, frames: int) -> None:
        """Counters of a run this DAE carries on with after a restart (counted back from
        the events topic)."""
        with self._cond:
            self._total, self._frames = total_counts, frames
            # the recount gives totals only: shown as the current period's
            self._period_frames = [0] * self._plan.number
            self._period_frames[self._period] = frames
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
        """New periods, between runs. More than one needs ev42, whose is84 carries the
        period: ValueError says so."""
        if plan.number > 1 and self._settings.event_schema != "ev42":
            raise ValueError(f"{plan.number} periods need [dae] event_schema = \"ev42\": ev44 "
                             "carries no period (ISIS sends it in pu00, which "
                             "ess-streaming-data-types does not provide)")
        with self._cond:
            self._plan = plan
            self._period = min(self._period, plan.number - 1)
            self._period_frames = [0] * plan.number

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
            return DaeCounters(
                self._total, self._frames, self._frames, rate, self._delivery_errors,
                self._frames * self._frame_charge_uah, tuple(self._period_frames),
                tuple(f * self._frame_charge_uah for f in self._period_frames),
                self._period + 1, self._monitor_counts,
                tuple(f / self._settings.frame_rate_hz for f in self._period_frames),
                self._settings.beam_current_ua if self._next_ns is not None else 0.0)

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
            n_events, n_monitor = (0, 0) if dwell else self._emit(frame_ns, in_period)
            with self._cond:
                if self._next_ns == frame_ns:
                    self._next_ns = frame_ns + period
                self._total += n_events
                self._monitor_counts += n_monitor
                self._frames += 1
                if in_period < len(self._period_frames):
                    self._period_frames[in_period] += 1
                self._recent.append((frame_ns, n_events))

    def _emit(self, frame_ns: int, period: int) -> tuple[int, int]:
        """One frame: the detector's events, then each monitor's. Returns how many of each."""
        tof, pixel = self._generator.frame()
        self._send(self._settings.source_name, frame_ns, period, tof, pixel)
        monitor_events = 0
        for name, monitor in self._monitors:
            m_tof, m_pixel = monitor.frame()
            self._send(name, frame_ns, period, m_tof, m_pixel)
            monitor_events += len(m_tof)
        self._producer.poll(0)
        return len(tof), monitor_events

    def _send(self, source: str, frame_ns: int, period: int, tof: np.ndarray,
              pixel: np.ndarray) -> None:
        self._message_id += 1
        if self._settings.event_schema == "ev42":
            payload = serialise_ev42(source, self._message_id, frame_ns, tof, pixel,
                                     isis_specific={"period_number": period,
                                                    "run_state": IsisRunState.RUNNING,
                                                    "proton_charge": self._frame_charge_uah})
        else:
            payload = serialise_ev44(source, self._message_id,
                                     np.array([frame_ns], dtype=np.int64),
                                     np.array([0], np.int32), tof, pixel)
        while True:
            try:
                self._producer.produce(self._topic, payload, timestamp=frame_ns // 1_000_000,
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
