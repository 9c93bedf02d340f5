"""The DAE's settings as ISISDAE exchanges them: DAESETTINGS (monitor, tables, timing source,
vetos), TCBSETTINGS (time channel boundaries), HARDWAREPERIODS (period type and count) and
UPDATESETTINGS, each a LabVIEW cluster document (ioc.labview_xml) with every element its
clients look up by name. A put of a whole document is checked, then applied: what a client
reads back is what took effect."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from datastream.durable import write_durably
from ioc.dae import PeriodPlan
from ioc.labview_xml import Element, SettingsError, parse, to_xml, whole
from ioc.labview_xml import number as num

DAE_CLUSTER = "Data Acquisition"
TCB_CLUSTER = "Time Channels"
PERIODS_CLUSTER = "Hardware Periods"
UPDATE_CLUSTER = "DAE Updates"

TIMING_SOURCES = ("ISIS", "Internal Test Clock", "SMP", "Muon Cerenkov", "Muon MS",
                  "ISIS (first TS1)", "TS1 Only")
PERIOD_TYPES = ("Software (PC controlled)", "Hardware (DAE internal control)",
                "Hardware (External signal control)")
# what DAE:PERIODTYPE shows for each
PERIOD_TYPE_NAMES = ("Software", "Hardware (internal)", "Hardware (external)")
PERIOD_SLOT_TYPES = ("UNUSED", "DAQ", "DWELL")
NO_YES = ("NO", "YES")
# (element name, choices) of DAESETTINGS's yes/no vetos and modes, in ISISDAE's order; some
# names really begin with a space
_VETOS_A = ((" Fermi Chopper Veto", NO_YES),)
_VETOS_B = (("Veto 1", NO_YES), ("Veto 2", NO_YES), ("Veto 3", NO_YES),
            ("Muon Cerenkov Pulse", ("FIRST", "SECOND")), (" TS2 Pulse Veto", NO_YES),
            (" ISIS 50Hz Veto", NO_YES))
# DAESETTINGS's veto switches -> the veto each enables (ioc.beam_model.VETO_BITS): ISISDAE's
# 50 Hz veto is the DAE's "ISIS slow" input, the Fermi chopper's its first fast chopper
VETO_SWITCHES = {"SMP (Chopper) Veto": "smp", "Veto 0": "ext0", "Veto 1": "ext1",
                 "Veto 2": "ext2", "Veto 3": "ext3", " Fermi Chopper Veto": "fermi0",
                 " TS2 Pulse Veto": "ts2_pulse", " ISIS 50Hz Veto": "isis_slow"}
HARDWARE_PERIOD_SLOTS = 8
TIME_REGIMES = 6
TIME_ROWS = 5
# more time channels than this is an absurd TCB (the DAE's spectra hold 8000; the live view's
# memory bound refuses what does not fit)
MAX_TIME_CHANNELS = 1_000_000
MAX_TOF_US = 10_000_000.0  # 10 s: no neutron frame is longer
MAX_PERIODS = 10_000


@dataclass(frozen=True)
class DaeSetup:
    """DAESETTINGS."""

    monitor_spectrum: int = 0
    monitor_from_us: float = 0.0
    monitor_to_us: float = 0.0
    # ISIS's tables as named (ioc.dae_tables finds, reads and checks them when the settings
    # are taken; "" for none: the geometry's one-to-one map)
    wiring_table: str = ""
    detector_table: str = ""
    spectra_table: str = ""
    timing_source: int = 1  # the simulated DAE runs on its own clock
    # every other veto/mode element, by name, as its choice index
    flags: dict[str, int] = field(default_factory=dict)
    fc_delay: float = 0.0
    fc_width: float = 0.0
    veto_names: tuple[str, str, str, str] = ("", "", "", "")

    def enabled_vetoes(self) -> frozenset[str]:
        """The vetoes these settings switch on (VETO_SWITCHES)."""
        return frozenset(veto for switch, veto in VETO_SWITCHES.items()
                         if self.flags.get(switch))

    def xml(self) -> str:
        def ew(name: str, choices: tuple[str, ...]) -> Element:
            return Element("EW", name, self.flags.get(name, 0), choices)

        return to_xml(DAE_CLUSTER, [
            Element("I32", "Monitor Spectrum", self.monitor_spectrum),
            Element("DBL", "from", float(self.monitor_from_us)),
            Element("DBL", "to", float(self.monitor_to_us)),
            Element("String", "Wiring Table", self.wiring_table),
            Element("String", "Detector Table", self.detector_table),
            Element("String", "Spectra Table", self.spectra_table),
            Element("EW", "DAETimingSource", self.timing_source, TIMING_SOURCES),
            ew("SMP (Chopper) Veto", NO_YES), ew("Veto 0", NO_YES),
            ew("Muon MS Mode", ("DISABLED", "ENABLED")),
            *(ew(n, c) for n, c in _VETOS_A),
            Element("DBL", "FC Delay", float(self.fc_delay)),
            Element("DBL", "FC Width", float(self.fc_width)),
            *(ew(n, c) for n, c in _VETOS_B),
            *(Element("String", f"Veto {i} Name", self.veto_names[i]) for i in range(4)),
        ])

    def updated(self, text: str) -> DaeSetup:
        v = parse(text, DAE_CLUSTER)
        flags = dict(self.flags)
        for name, choices in (("SMP (Chopper) Veto", NO_YES), ("Veto 0", NO_YES),
                              ("Muon MS Mode", ("DISABLED", "ENABLED")), *_VETOS_A, *_VETOS_B):
            if name in v:
                flags[name] = whole(v, name, 0, len(choices) - 1)
        low, high = (num(v, "from", 0, MAX_TOF_US) if "from" in v else self.monitor_from_us,
                     num(v, "to", 0, MAX_TOF_US) if "to" in v else self.monitor_to_us)
        if high < low:
            raise SettingsError(f"monitor range: 'to' {high:g} is below 'from' {low:g}")
        return dataclasses.replace(
            self, flags=flags, monitor_from_us=low, monitor_to_us=high,
            monitor_spectrum=(whole(v, "Monitor Spectrum", 0, 2**31 - 1)
                              if "Monitor Spectrum" in v else self.monitor_spectrum),
            wiring_table=_path(v, "Wiring Table", self.wiring_table),
            detector_table=_path(v, "Detector Table", self.detector_table),
            spectra_table=_path(v, "Spectra Table", self.spectra_table),
            timing_source=(whole(v, "DAETimingSource", 0, len(TIMING_SOURCES) - 1)
                           if "DAETimingSource" in v else self.timing_source),
            fc_delay=num(v, "FC Delay", 0, 1e9) if "FC Delay" in v else self.fc_delay,
            fc_width=num(v, "FC Width", 0, 1e9) if "FC Width" in v else self.fc_width,
            veto_names=tuple(_path(v, f"Veto {i} Name", self.veto_names[i])  # type: ignore
                             for i in range(4)))


def _path(values: dict[str, str], name: str, default: str) -> str:
    text = values.get(name, default)
    if any(ord(c) < 32 for c in text) or len(text) > 1024:
        raise SettingsError(f"{name!r}: control characters or over 1024 characters")
    return text


@dataclass(frozen=True)
class TimeRow:
    """One row of a time regime: From and To in µs; mode 1 is dT = Steps (µs), mode 2 is
    dT/T = Steps (logarithmic); mode 0 an unused row."""

    from_us: float = 0.0
    to_us: float = 0.0
    steps: float = 0.0
    mode: int = 0


@dataclass(frozen=True)
class Tcb:
    """TCBSETTINGS. The simulated DAE bins with regime 1, row 1 (one linear or logarithmic
    range); a document that uses more is refused with the reason rather than taken in part."""

    rows: tuple[TimeRow, ...] = (TimeRow(0.0, 100_000.0, 100.0, 1),)
    time_unit: int = 0
    channel_file: str = ""
    method: int = 0

    def row(self, regime: int, index: int) -> TimeRow:
        if regime == 1 and index <= len(self.rows):
            return self.rows[index - 1]
        return TimeRow()

    def xml(self) -> str:
        def rows(regime: int) -> list[Element]:
            out = []
            for i in range(1, TIME_ROWS + 1):
                r = self.row(regime, i)
                out += [Element("DBL", f"TR{regime} From {i}", float(r.from_us)),
                        Element("DBL", f"TR{regime} To {i}", float(r.to_us)),
                        Element("DBL", f"TR{regime} Steps {i}", float(r.steps)),
                        Element("U16", f"TR{regime} In Mode {i}", r.mode)]
            return out

        return to_xml(TCB_CLUSTER, [
            *rows(1), Element("U16", "Time Unit", self.time_unit),
            Element("String", "Time Channel File", self.channel_file),
            Element("U16", "Calculation Method", self.method),
            *(e for regime in range(2, TIME_REGIMES + 1) for e in rows(regime))])

    def updated(self, text: str) -> Tcb:
        v = parse(text, TCB_CLUSTER)
        if "Calculation Method" in v and whole(v, "Calculation Method", 0, 1) == 1:
            raise SettingsError("a time channel file (Calculation Method 1) is not supported "
                                "here: give the boundaries as parameters")
        if "Time Unit" in v and whole(v, "Time Unit", 0, 1) != 0:
            raise SettingsError("Time Unit must be 0 (µs, neutron time of flight)")
        rows = []
        for i in range(1, TIME_ROWS + 1):
            old = self.row(1, i)
            key = f"TR1 %s {i}"
            mode = whole(v, key % "In Mode", 0, 4) if key % "In Mode" in v else old.mode
            row = TimeRow(num(v, key % "From", 0, MAX_TOF_US) if key % "From" in v
                          else old.from_us,
                          num(v, key % "To", 0, MAX_TOF_US) if key % "To" in v else old.to_us,
                          num(v, key % "Steps", 0, MAX_TOF_US) if key % "Steps" in v
                          else old.steps, mode)
            rows.append(row)
        for regime in range(2, TIME_REGIMES + 1):
            for i in range(1, TIME_ROWS + 1):
                name = f"TR{regime} In Mode {i}"
                if name in v and whole(v, name, 0, 4) != 0:
                    raise SettingsError(f"time regime {regime} is not supported here: only "
                                        "regime 1 is binned")
        tcb = Tcb(tuple(rows), 0, _path(v, "Time Channel File", self.channel_file), 0)
        tcb.channels()  # raises with the reason for a range that makes no time channels
        return tcb

    def channels(self) -> tuple[float, float, int, bool]:
        """(tof_min_ns, tof_max_ns, channels, logarithmic) of regime 1: row 1, which the
        other rows must leave unused."""
        first, *rest = self.rows
        if any(r.mode != 0 for r in rest):
            raise SettingsError("only one time range (TR1 row 1) is supported here; set the "
                                "other rows' In Mode to 0")
        low, high, step = first.from_us, first.to_us, first.steps
        if first.mode not in (1, 2):
            raise SettingsError(f"TR1 In Mode 1 is {first.mode}: 1 (dT = C) or 2 (dT/T = C)")
        if not high > low or not step > 0:
            raise SettingsError(f"TR1 row 1: From {low:g} to {high:g} µs in steps of {step:g} "
                                "makes no time channels")
        if first.mode == 1:
            n = math.ceil((high - low) / step - 1e-9)
            top = low + n * step
        else:
            if low <= 0:
                raise SettingsError("logarithmic time channels (dT/T) need From above 0")
            n = math.ceil(math.log(high / low) / math.log1p(step) - 1e-9)
            top = low * (1 + step) ** n
        if not 1 <= n <= MAX_TIME_CHANNELS:
            raise SettingsError(f"TR1 row 1 makes {n} time channels: 1 to "
                                f"{MAX_TIME_CHANNELS:,} allowed")
        # to the picosecond: a boundary computed in steps carries float noise, not meaning
        return round(low * 1000.0, 3), round(top * 1000.0, 3), n, first.mode == 2


@dataclass(frozen=True)
class PeriodSlot:
    kind: int = 0  # UNUSED, DAQ, DWELL
    frames: int = 0
    output: int = 0
    label: str = ""


@dataclass(frozen=True)
class Periods:
    """HARDWAREPERIODS. Software periods: frames count into the period PERIOD:SP chose;
    hardware (internal): the DAE steps through the DAQ/DWELL slots, each for its frames."""

    period_type: int = 0
    soft_periods: int = 1
    sequences: int = 0
    output_delay_us: float = 0.0
    slots: tuple[PeriodSlot, ...] = (PeriodSlot(),) * HARDWARE_PERIOD_SLOTS
    setup_source: int = 0
    period_file: str = ""

    def __post_init__(self) -> None:
        # NUMPERIODS:SP sets soft_periods alone, past the document's checks: 0 or -1 periods
        # would leave the DAE counting into period -1
        if not 1 <= self.soft_periods <= MAX_PERIODS:
            raise SettingsError(f"{self.soft_periods} software periods: between 1 and "
                                f"{MAX_PERIODS}")

    @property
    def number(self) -> int:
        """NUMPERIODS: the software periods, or the hardware slots in use."""
        if self.period_type == 0:
            return self.soft_periods
        used = [s for s in self.slots if s.kind != 0]
        return max(1, len(used))

    def plan(self) -> PeriodPlan:
        """What the DAE counts with: software periods, or the hardware slots in use in turn
        (DWELL slots count frames but no data)."""
        if self.period_type == 0:
            return PeriodPlan(self.number)
        used = [s for s in self.slots if s.kind != 0]
        return PeriodPlan(self.number, tuple((i, s.frames, s.kind == 2)
                                             for i, s in enumerate(used)))

    def xml(self) -> str:
        elements = [
            Element("EW", "Period Setup Source", self.setup_source,
                    ("Use Parameters Below", "Read from file")),
            Element("EW", "Period Type", self.period_type, PERIOD_TYPES),
            Element("String", "Period File", self.period_file),
            Element("I32", "Number Of Software Periods", self.soft_periods),
            Element("DBL", "Hardware Period Sequences", float(self.sequences)),
            Element("DBL", "Output Delay (us)", float(self.output_delay_us))]
        for i, slot in enumerate(self.slots, 1):
            elements += [Element("EW", f"Type {i}", slot.kind, PERIOD_SLOT_TYPES),
                         Element("I32", f"Frames {i}", slot.frames),
                         Element("U16", f"Output {i}", slot.output),
                         Element("String", f"Label {i}", slot.label)]
        return to_xml(PERIODS_CLUSTER, elements)

    def updated(self, text: str) -> Periods:
        v = parse(text, PERIODS_CLUSTER)

        def get(name: str, low: int, high: int, default: int) -> int:
            return whole(v, name, low, high) if name in v else default

        if get("Period Setup Source", 0, 1, self.setup_source) == 1:
            raise SettingsError("periods from a file (Period Setup Source 1) are not "
                                "supported here: give them as parameters")
        period_type = get("Period Type", 0, 2, self.period_type)
        if period_type == 2:
            raise SettingsError("externally controlled hardware periods need an external "
                                "signal the simulated DAE does not have")
        slots = tuple(PeriodSlot(get(f"Type {i}", 0, 2, s.kind),
                                 get(f"Frames {i}", 0, 2**31 - 1, s.frames),
                                 get(f"Output {i}", 0, 65535, s.output),
                                 _path(v, f"Label {i}", s.label))
                      for i, s in enumerate(self.slots, 1))
        periods = dataclasses.replace(
            self, period_type=period_type,
            soft_periods=get("Number Of Software Periods", 1, MAX_PERIODS, self.soft_periods),
            sequences=get("Hardware Period Sequences", 0, 2**31 - 1, self.sequences),
            output_delay_us=(num(v, "Output Delay (us)", 0, MAX_TOF_US)
                             if "Output Delay (us)" in v else self.output_delay_us),
            slots=slots)
        if period_type == 1 and not any(s.kind != 0 and s.frames > 0 for s in slots):
            raise SettingsError("hardware periods need at least one DAQ or DWELL slot with "
                                "frames above 0")
        return periods


@dataclass(frozen=True)
class Updates:
    """UPDATESETTINGS: how often ISISDAE saves the run (AUTOSAVE:FREQ). The file writer here
    writes continuously, so these are kept and shown, not acted on."""

    frequency: int = 5000
    units: int = 0
    dashboard_interval: int = 5

    def xml(self) -> str:
        return to_xml(UPDATE_CLUSTER, [
            Element("U32", " Frequency", self.frequency),
            Element("EW", "Units", self.units,
                    ("Frames", "Events", "Dashboard Polls", "Microamps")),
            Element("U32", "Dashboard Update Interval", self.dashboard_interval)])

    def updated(self, text: str) -> Updates:
        v = parse(text, UPDATE_CLUSTER)
        return Updates(
            whole(v, " Frequency", 0, 2**31 - 1) if " Frequency" in v else self.frequency,
            whole(v, "Units", 0, 3) if "Units" in v else self.units,
            whole(v, "Dashboard Update Interval", 0, 3600) if "Dashboard Update Interval" in v
            else self.dashboard_interval)


@dataclass(frozen=True)
class DaeConfig:
    """All four settings documents of the DAE: what the IOC shows and counts with, kept on
    disk (DaeConfigStore) so a restarted IOC has the settings it was given, as the ICP does."""

    setup: DaeSetup = field(default_factory=DaeSetup)
    tcb: Tcb = field(default_factory=Tcb)
    periods: Periods = field(default_factory=Periods)
    updates: Updates = field(default_factory=Updates)

    def documents(self) -> dict[str, str]:
        return {"setup": self.setup.xml(), "tcb": self.tcb.xml(),
                "periods": self.periods.xml(), "updates": self.updates.xml()}

    def with_documents(self, documents: dict[str, str]) -> DaeConfig:
        """These settings with each document given applied over them, checked as a put is."""
        changed = {name: getattr(self, name).updated(text)
                   for name, text in documents.items() if name in _DOCUMENTS}
        return dataclasses.replace(self, **changed)


_DOCUMENTS = ("setup", "tcb", "periods", "updates")


class DaeConfigStore:
    """The DAE's settings as their XML documents in one JSON file, written durably."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, config: DaeConfig) -> None:
        write_durably(self.path, json.dumps(config.documents()).encode())

    def load(self, default: DaeConfig) -> DaeConfig:
        """The stored settings over `default`; `default` itself if none are stored. A file
        that cannot be read is said (SettingsError), not silently replaced."""
        try:
            documents = json.loads(self.path.read_text())
        except FileNotFoundError:
            return default
        except (OSError, ValueError) as exc:
            raise SettingsError(f"the DAE settings {self.path} are unreadable: {exc}") from exc
        if not isinstance(documents, dict) or not all(
                isinstance(v, str) for v in documents.values()):
            raise SettingsError(f"the DAE settings {self.path} are not a map of documents")
        return default.with_documents(documents)
