"""The tables DAESETTINGS names (Wiring Table, Detector Table, Spectra Table): found, read
(ioc.isis_tables) and checked against the instrument's detectors, giving the run's
detector-spectrum map. A table that cannot be taken is refused (TableError) with the reason.

Where a table is: a relative path is taken from the instrument's directory, iocBoot/<INST>/
(beside config.toml, as its geometry is); an absolute path must lie inside that directory
(symlinks followed), so a CA client's put makes the IOC read no other file, nor quote one in
ERRMSGS. IBEX names tables by their place in the instrument's settings,
C:\\Instrument\\Settings\\config\\<machine>\\configurations\\tables\\<name> (ISISDAE's
"$(ICPCONFIGROOT)/tables"): such a path is read as iocBoot/<INST>/tables/<name>; any other
Windows path is refused, saying so.

What is checked: every detector a table names is the instrument's (a geometry pixel or
monitor); the tables that are set name the same detectors (ISIS's three tables describe the
same inputs); a monitor is coded 1 in the detector table and marked in the wiring table, and
nothing else is; a monitor's spectrum is its own (its histogram is binned apart from the
banks'); the spectra table gives at least one pixel a spectrum."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from ioc.isis_tables import (
    MONITOR_CODE,
    DetectorTable,
    SpectraTable,
    TableError,
    WiringTable,
    parse_detectors,
    parse_spectra,
    parse_wiring,
    read_text,
)

TABLES_SUBDIR = "tables"
# ISISDAE lists a tables directory's files by these (its st.cmd's *_PATTERN), for IBEX
LIST_PATTERNS = {"wiring": r".*wiring.*", "detector": r".*det.*", "spectra": r".*spec.*"}
# files a choice list names at most: the list's PV holds 16 kB of compressed hex
MAX_LISTED = 100
_WINDOWS = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


@dataclass(frozen=True)
class InstrumentDetectors:
    """The detector numbers an instrument has: its pixels and its monitors."""

    pixels: np.ndarray
    monitors: tuple[int, ...] = ()

    def describe(self) -> str:
        monitors = ", ".join(map(str, self.monitors)) or "none"
        return f"pixels {_ranges(self.pixels)}, monitors {monitors}"


def _ranges(ids: np.ndarray, most: int = 4) -> str:
    """Sorted ids as runs, "1..3072, 3073..4096" style, the first `most` of them."""
    ids = np.unique(ids)
    if not len(ids):
        return "none"
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    runs = [(int(r[0]), int(r[-1])) for r in np.split(ids, breaks)]
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs[:most])
    return text + (f" and {len(runs) - most} more runs" if len(runs) > most else "")


def resolve(name: str, instrument_dir: Path) -> Path:
    """Where a table named in DAESETTINGS is (see the module's doc), or TableError."""
    base = instrument_dir.resolve()
    if _WINDOWS.match(name):
        parts = [p.lower() for p in PureWindowsPath(name).parts]
        if len(parts) >= 3 and parts[-3:-1] == ["configurations", TABLES_SUBDIR]:
            relative = Path(TABLES_SUBDIR, PureWindowsPath(name).name)
        else:
            raise TableError(
                "a Windows path outside IBEX's ...\\configurations\\tables\\ cannot be read "
                f"here: name the table from {base} (e.g. tables/<name>)")
    else:
        relative = Path(name.replace("\\", "/"))
    try:
        path = (base / relative).resolve()
    except (OSError, ValueError) as exc:
        raise TableError(f"not a path that can be read: {exc}") from None
    if not path.is_relative_to(base):
        raise TableError(f"outside the instrument's directory {base}: tables are read "
                         "from there only")
    return path


def listed(instrument_dir: Path | None, kind: str) -> list[str]:
    """The tables of a kind in iocBoot/<INST>/tables/, by ISISDAE's pattern, as the full paths
    WIRINGTABLES/DETECTORTABLES/SPECTRATABLES give IBEX to choose from."""
    if instrument_dir is None:
        return []
    directory = instrument_dir.resolve() / TABLES_SUBDIR
    pattern = re.compile(LIST_PATTERNS[kind], re.IGNORECASE)
    try:
        return sorted(str(p) for p in directory.iterdir()
                      if p.is_file() and pattern.fullmatch(p.name))[:MAX_LISTED]
    except OSError:
        return []


@dataclass(frozen=True)
class DaeTables:
    """The tables in use (None: not set): the spectra table's map, or none."""

    spectra: SpectraTable | None = None
    detector: DetectorTable | None = None
    wiring: WiringTable | None = None
    monitors: tuple[int, ...] = ()

    def spectrum_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(spectra, detectors) of the pixels the spectra table gives a spectrum (monitors
        are binned apart, with monitor_spectra); None without a spectra table."""
        if self.spectra is None:
            return None
        keep = (self.spectra.spectra > 0) & ~np.isin(self.spectra.detectors, self.monitors)
        return self.spectra.spectra[keep], self.spectra.detectors[keep]

    def monitor_spectra(self) -> dict[int, int]:
        """Each monitor's spectrum as the spectra table gives it (absent: the default, after
        the pixels')."""
        if self.spectra is None:
            return {}
        return {int(d): int(s) for d, s in zip(self.spectra.detectors, self.spectra.spectra,
                                              strict=True)
                if s > 0 and d in self.monitors}


_PARSERS = {"wiring": parse_wiring, "detector": parse_detectors, "spectra": parse_spectra}


def load_tables(names: dict[str, str], instrument_dir: Path | None,
                detectors: InstrumentDetectors | None) -> DaeTables:
    """The tables named ({"wiring"|"detector"|"spectra": path as DAESETTINGS has it; "" for
    none}), read and checked; TableError says which table, where and why."""
    tables: dict[str, SpectraTable | DetectorTable | WiringTable] = {}
    for kind, name in names.items():
        if not name:
            continue
        try:
            if instrument_dir is None:
                raise TableError("this IOC has no instrument directory to read tables from")
            if detectors is None:
                raise TableError("the instrument's detectors are not known (no geometry)")
            tables[kind] = _PARSERS[kind](read_text(resolve(name, instrument_dir)))
            _check_known(tables[kind], detectors)
        except TableError as exc:
            raise TableError(f"{kind} table {name!r}: {exc}") from None
    if not tables:
        return DaeTables()
    assert detectors is not None
    monitors = detectors.monitors
    spectra, detector, wiring = (tables.get(k) for k in ("spectra", "detector", "wiring"))
    _check_same_detectors(tables, names)
    if isinstance(spectra, SpectraTable):
        _check_spectra(spectra, monitors, names["spectra"])
    if isinstance(detector, DetectorTable):
        _check_flags(detector.detectors, detector.codes == MONITOR_CODE, detector.lines,
                     monitors, f"detector table {names['detector']!r}", "code 1 (monitor)")
    if isinstance(wiring, WiringTable):
        _check_flags(wiring.detectors, wiring.monitors > 0, wiring.lines, monitors,
                     f"wiring table {names['wiring']!r}", "a monitor number")
    return DaeTables(spectra, detector, wiring, monitors)  # type: ignore[arg-type]


def _check_known(table: SpectraTable | DetectorTable | WiringTable,
                 detectors: InstrumentDetectors) -> None:
    known = np.concatenate([detectors.pixels, np.asarray(detectors.monitors, np.int64)])
    unknown = np.flatnonzero(~np.isin(table.detectors, known))
    if len(unknown):
        i = unknown[0]
        more = f" ({len(unknown) - 1} more like it)" if len(unknown) > 1 else ""
        raise TableError(f"line {table.lines[i]}: detector {table.detectors[i]} is not one "
                         f"of the instrument's ({detectors.describe()}){more}")


def _check_same_detectors(tables: dict, names: dict[str, str]) -> None:
    for first, second in itertools.pairwise(list(tables)):
        a, b = first, second
        only = np.setdiff1d(tables[a].detectors, tables[b].detectors)
        if not len(only):
            a, b = second, first
            only = np.setdiff1d(tables[a].detectors, tables[b].detectors)
        if len(only):
            raise TableError(f"the {a} table {names[a]!r} names detectors the {b} table "
                             f"{names[b]!r} does not: {_ranges(only)} (the tables describe "
                             "the same detectors)")


def _check_spectra(table: SpectraTable, monitors: tuple[int, ...], name: str) -> None:
    where = f"spectra table {name!r}"
    is_monitor = np.isin(table.detectors, monitors)
    for i in np.flatnonzero(is_monitor & (table.spectra > 0)):
        shared = np.flatnonzero((table.spectra == table.spectra[i]) & ~(
            np.arange(len(table.spectra)) == i))
        if len(shared):
            j = shared[0]
            raise TableError(f"{where}: line {table.lines[j]}: detector {table.detectors[j]} "
                             f"is in spectrum {table.spectra[i]}, monitor "
                             f"{table.detectors[i]}'s (line {table.lines[i]}): a monitor's "
                             "spectrum is its own")
    if not np.any((table.spectra > 0) & ~is_monitor):
        raise TableError(f"{where}: gives no pixel a spectrum (all 0 or monitors): the run's "
                         "histogram would have none")


def _check_flags(ids: np.ndarray, flagged: np.ndarray, lines: np.ndarray,
                 monitors: tuple[int, ...], where: str, flag: str) -> None:
    """A monitor is flagged as one, and only a monitor."""
    wrong = np.flatnonzero(flagged != np.isin(ids, monitors))
    if len(wrong):
        i = wrong[0]
        said = "has" if flagged[i] else "lacks"
        what = "a pixel, not a monitor" if flagged[i] else "one of the instrument's monitors"
        raise TableError(f"{where}: line {lines[i]}: detector {ids[i]} {said} {flag} but is "
                         f"{what}")
