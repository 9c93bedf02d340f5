"""The proton beam as the simulated DAE sees it, frame by frame: the charge each frame
brings (the beam current with its pulse-to-pulse jitter, none while the beam is off) and the
vetoes that stop frames from counting (the target station not ready while the beam is off,
a chopper out of phase now and then). ISIS's DAE reports both per frame in pu00."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# veto name -> its bit in pu00's `vetos` mask: the DAE's own word 9 (IBEX developers' manual,
# "Datastreaming UDP packet formats"); kafka_dae_control names them alike
VETO_BITS: dict[str, int] = {
    "fifo": 0,  # the DAE's data buffer overflowed
    "smp": 1,  # SMP (chopper) veto
    "ts2_pulse": 2,
    "wrong_pulse": 3,
    "isis_slow": 4,
    "run_signal": 5,
    "pause": 6,  # the run is paused: PAUSE is the software veto
    "period_overflow": 7,
    "dwell": 8,  # a dwell period's frame: time passes, no data is taken
    "crc": 9,
    # external veto inputs, which a station wires to its own signals: ext0 is where the
    # simulated target station says it is not ready (no beam)
    "ext0": 16, "ext1": 17, "ext2": 18, "ext3": 19,
    "fermi0": 20, "fermi1": 21, "fermi2": 22, "fermi3": 23,
}
# the external veto a beam-off spell raises
BEAM_OFF_VETO = "ext0"


def veto_mask(names: object) -> int:
    """The bits of these vetoes (ValueError for a name not in VETO_BITS)."""
    mask = 0
    for name in names:  # type: ignore[attr-defined]
        if name not in VETO_BITS:
            raise ValueError(f"veto {name!r}: one of {', '.join(VETO_BITS)}")
        mask |= 1 << VETO_BITS[name]
    return mask


def veto_names(mask: int) -> list[str]:
    return [name for name, bit in VETO_BITS.items() if mask >> bit & 1]


@dataclass(frozen=True)
class BeamSettings:
    current_ua: float = 40.0  # on target while the beam is on
    jitter: float = 0.0  # relative spread (one sigma) of each frame's charge
    # beam-off spells: on average every `off_every_s` seconds, for `off_for_s` seconds
    # (0: the beam never goes off); frames then carry no charge and the BEAM_OFF_VETO
    off_every_s: float = 0.0
    off_for_s: float = 0.0
    # veto name -> the fraction of frames it stops, at random (e.g. {"smp": 0.02})
    vetoes: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (("beam_current_ua", self.current_ua),
                            ("beam_jitter", self.jitter), ("beam_off_every_s", self.off_every_s),
                            ("beam_off_for_s", self.off_for_s)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} = {value}: a finite number, 0 or more")
        if self.jitter > 0.5:
            raise ValueError(f"beam_jitter = {self.jitter}: a fraction of at most 0.5")
        if self.off_every_s and not self.off_for_s:
            raise ValueError("beam_off_every_s needs beam_off_for_s (how long the beam is off)")
        for name, fraction in self.vetoes.items():
            if name not in VETO_BITS:
                raise ValueError(f"veto {name!r}: one of {', '.join(VETO_BITS)}")
            if not 0 <= fraction <= 1:
                raise ValueError(f"veto {name} = {fraction}: a fraction of frames (0..1)")


class BeamModel:
    """Not thread-safe: the DAE's frame thread asks it for each frame in turn."""

    def __init__(self, settings: BeamSettings, frame_rate_hz: float, seed: int | None) -> None:
        self.settings = settings
        self._rng = np.random.default_rng(None if seed is None else seed + 7)
        # µAh in one frame at the nominal current
        self._nominal = settings.current_ua / frame_rate_hz / 3600.0
        s = settings
        self._p_off = 1 / (s.off_every_s * frame_rate_hz) if s.off_every_s else 0.0
        self._p_on = 1 / (s.off_for_s * frame_rate_hz) if s.off_for_s else 1.0
        self._vetoes = [(VETO_BITS[n], f) for n, f in s.vetoes.items() if f > 0]
        self.beam_on = True

    def frame(self) -> tuple[float, int]:
        """(proton charge in µAh, as the float32 pu00 carries it; the veto signals, as a
        mask) of the next frame: the DAE vetoes it on the signals of the vetoes enabled."""
        s, rng = self.settings, self._rng
        if self.beam_on and self._p_off and rng.random() < self._p_off:
            self.beam_on = False
        elif not self.beam_on and rng.random() < self._p_on:
            self.beam_on = True
        vetos = 0 if self.beam_on else 1 << VETO_BITS[BEAM_OFF_VETO]
        for bit, fraction in self._vetoes:
            if rng.random() < fraction:
                vetos |= 1 << bit
        charge = 0.0
        if self.beam_on:
            charge = self._nominal * (1 + s.jitter * rng.standard_normal()) if s.jitter \
                else self._nominal
        return float(np.float32(max(charge, 0.0))), vetos

    @property
    def current_ua(self) -> float:
        return self.settings.current_ua if self.beam_on else 0.0
