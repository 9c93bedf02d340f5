"""A run's frames, as ISIS streams them today: one pu00 per frame (its period, proton charge
and vetos) before the frame's ev44 messages, which carry the frame's time as their reference
time. Every reader of events (the file writer, the live view, just-bin-it, run control's
recount) counts frames through this one book, so GOODFRAMES, RAWFRAMES, GOODUAH and RAWUAH
mean the same everywhere, and mean what they mean at ISIS:

- a raw frame is any frame of the run; a good frame is one no veto stopped (vetos == 0);
- GOODUAH sums the proton charge of good frames, RAWUAH of all;
- a vetoed frame's events (a DAE may send them) are not counted or binned: they are not data.

Older streams keep working: with no pu00 in the run, each distinct pulse time of the events
is one good frame (no charge) in the message's own period (an ev42's is84, else period 1)."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from datastream.repeats import RecentMessages
from datastream.run_window import Window
from datastream.schemas.pu00 import PulseMetadata

log = logging.getLogger(__name__)

# periods counted one by one (numbered from 0 below this; ISISDAE's most periods): a hostile
# period_number (a uint32) must not make a reader list 4 billion periods; frames of a period
# past it count in the totals only
MAX_PERIODS_COUNTED = 10_000
# frames remembered by their time, to match a frame's ev44 chunks with its pu00 and to know
# a pulse time seen already (an ev44-only DAE that splits a frame into chunks)
REMEMBERED_FRAMES = 100_000


class Frame(NamedTuple):
    reference_time: int  # ns since the epoch
    period: int  # from 0
    proton_charge: float  # µAh in this frame
    vetos: int  # bit mask; 0 for a good frame

    @property
    def good(self) -> bool:
        return self.vetos == 0


@dataclass
class PeriodTotals:
    good_frames: int = 0
    raw_frames: int = 0
    good_uah: float = 0.0
    raw_uah: float = 0.0

    def add(self, frame: Frame) -> None:
        self.raw_frames += 1
        self.raw_uah += frame.proton_charge
        if frame.good:
            self.good_frames += 1
            self.good_uah += frame.proton_charge


@dataclass
class FrameTotals(PeriodTotals):
    """The run's totals, and per period (from 0; only periods seen: a dict, as a period
    number is the sender's word)."""

    periods: dict[int, PeriodTotals] = field(default_factory=dict)

    def count(self, frame: Frame) -> None:
        self.add(frame)
        if 0 <= frame.period < MAX_PERIODS_COUNTED:
            self.periods.setdefault(frame.period, PeriodTotals()).add(frame)

    def per_period(self, name: str, number: int) -> list[float]:
        """One PeriodTotals field of periods 0..number-1 (0 for a period not seen)."""
        return [getattr(self.periods.get(p, PeriodTotals()), name) for p in range(number)]


class FrameBook:
    """The frames of one run window. Not thread-safe: one reader's consumer feeds it."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.totals = FrameTotals()
        self.pulsed = False  # a pu00 of the run was seen: frames come from pu00 only
        self.repeated = 0  # pu00 messages seen already (a producer's retry)
        self._frames: collections.OrderedDict[int, Frame] = collections.OrderedDict()
        self._recent = RecentMessages()

    def set_stop(self, stop_ns: int | None) -> None:
        self.window = Window(self.window.start_ns, stop_ns)

    def _remember(self, frame: Frame) -> None:
        self._frames[frame.reference_time] = frame
        if len(self._frames) > REMEMBERED_FRAMES:
            self._frames.popitem(last=False)

    def add_pulse(self, pulse: PulseMetadata) -> Frame | None:
        """A pu00: the frame it opens if it belongs to the run and is new, else None."""
        t = pulse.reference_time
        if not self.window.contains(t):
            return None
        if self._recent.repeated(pulse.message_id, t) or t in self._frames:
            self.repeated += 1
            return None
        frame = Frame(t, int(pulse.period_number or 0), float(pulse.proton_charge or 0.0),
                      int(pulse.vetos or 0))
        self.pulsed = True
        self._remember(frame)
        self.totals.count(frame)
        return frame

    def is_good(self, reference_time: int) -> bool:
        """False for a frame known to be vetoed (a monitor's events of it are not data)."""
        frame = self._frames.get(reference_time)
        return frame is None or frame.good

    def take(self, reference_time: np.ndarray, mask: np.ndarray, default_period: int = 0,
             default_charge: float = 0.0) -> list[tuple[int, np.ndarray]]:
        """An event message's pulses that `mask` keeps (those in the run), as good_pulses
        groups them; frames counted as frames_of says."""
        frames = self.frames_of(reference_time, mask, default_period, default_charge)
        return good_pulses(frames, mask)

    def frames_of(self, reference_time: np.ndarray, mask: np.ndarray, default_period: int = 0,
                  default_charge: float = 0.0, count: bool = True) -> list[Frame]:
        """The frame of each pulse of an event message that `mask` keeps (those in the run),
        in order. In a run without pu00, a pulse time not seen before is a new good frame of
        `default_period` bringing `default_charge` (an ev42's is84), counted here; once the
        run has pu00, a pulse with none is taken as good, in `default_period`, and not
        counted as a frame (its pu00 went missing). Without pu00 each message's own period
        places its events, as before pu00: a pulse time seen again (a frame in chunks) is
        not counted again, whatever period the later message says. count=False places the
        pulses alike but counts and remembers no frame: a reader that counts frames from one
        source only (the live view's, from the detector's) places another's (a monitor's)."""
        frames = []
        # one frame a message (ISIS's): its time without numpy's indexing
        times = (([int(reference_time[0])] if mask[0] else []) if len(mask) == 1
                 else reference_time[mask].tolist())
        for t in times:
            known = self._frames.get(t)
            if self.pulsed and known is not None:
                frames.append(known)
                continue
            frame = Frame(t, default_period, default_charge, 0)
            if count and not self.pulsed and known is None:
                self._remember(frame)
                self.totals.count(frame)
            frames.append(frame)
        return frames


def good_pulses(frames: list[Frame], mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(period, which of the message's pulses) for each period with good frames among the
    pulses `mask` keeps (`frames`: theirs, in order): what a reader counts and bins. Usually
    one (ISIS sends a frame a message)."""
    if len(frames) == 1 and len(mask) == 1:  # the common case, without numpy's overhead
        return [(frames[0].period, mask)] if frames[0].good else []
    kept = np.flatnonzero(mask)
    periods = np.array([f.period for f in frames], np.int64)
    good = np.array([f.good for f in frames], bool)
    groups = []
    for p in np.unique(periods[good]).tolist():
        chosen = np.zeros(len(mask), bool)
        chosen[kept[good & (periods == p)]] = True
        groups.append((int(p), chosen))
    return groups
