"""Which rows of the live view's per-pixel histogram make each of the DAE's spectra: the run's
pl72 `detector_spectrum_map` (run control sends the spectra table's, else the geometry's one
to one), as the file writer's ICP histogram (filewriter.modules.isis_histogram) sums them, so
that `DAE:SPEC:<p>:<s>` shows the counts the file's `detector_1/counts` has for spectrum s.
Pure: a map in, row indices out.

Spectrum 0 is ISIS's dust-bin: its detectors count in no spectrum, and spectrum 0 reads as
zeros. A spectrum number the map does not name reads as zeros too. NUMSPECTRA is the highest
spectrum number (the ICP's NSP1: its spectra are 0..NSP1, a gap in a table is an empty
spectrum), which for ISIS's tables, numbered 1..N, is the map's spectrum count.

Without a map (an older run start), or with one the live view cannot trust, spectrum n is
pixel n and NUMSPECTRA the pixel count, as before maps were sent.

The beam monitors are not in the pl72's map (run control leaves them out: they are binned
apart); a map may carry them as spectra of their own (with_monitors, from the run's
isis_histogram config: liveview.monitor_spectra), read from the histogram's per-monitor
counts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

# a map past these is not an instrument's: its index would take more memory than the
# histogram it groups (2**24 entries is 16 M detectors, past any ISIS or ESS instrument)
MAX_ENTRIES = 1 << 24
MAX_SPECTRUM = 1 << 24


class BadSpectrumMap(ValueError):
    """The pl72's map is not one the live view can follow; the message says why."""


@dataclass(frozen=True, eq=False)
class SpectrumMap:
    """Spectrum `numbers[i]`'s histogram rows (pixel id - first pixel) are
    `rows[starts[i]:starts[i + 1]]`, ascending; `numbers` ascending, each with at least one
    detector in the map (its rows may still be none: detectors the live view does not bin)."""

    n_spectra: int  # NUMSPECTRA
    numbers: np.ndarray
    starts: np.ndarray
    rows: np.ndarray
    mapped: bool  # from the run's pl72; False: one spectrum a pixel
    unbinned: int = 0  # the map's detectors outside the pixels the live view bins
    # the beam monitors served as spectra: (spectrum, its events' source), by spectrum, none
    # a detector's (liveview.monitor_spectra); their counts are the histogram's own per
    # monitor, not pixel rows
    monitors: tuple[tuple[int, str], ...] = ()

    @classmethod
    def one_a_pixel(cls, first_pixel: int, n_pixels: int) -> SpectrumMap:
        """Spectrum n = pixel n, NUMSPECTRA the pixel count: the DAE's one-to-one map (a
        pixel id below 0 is no spectrum)."""
        ids = np.arange(first_pixel, first_pixel + n_pixels, dtype=np.int64)
        keep = ids >= 0
        numbers = ids[keep]
        return cls(n_pixels, numbers, np.arange(len(numbers) + 1, dtype=np.int64),
                   np.flatnonzero(keep).astype(np.int64), False)

    @classmethod
    def from_map(cls, spectra: Any, detectors: Any, n_spectra: Any, first_pixel: int,
                 n_pixels: int) -> SpectrumMap:
        """The map of a pl72 (its spectrum numbers, detector ids and spectrum count), over
        the histogram's pixels first_pixel..first_pixel + n_pixels - 1. BadSpectrumMap if
        it is malformed: the arrays' lengths differ, a number is negative or absurd, a
        detector is in two spectra, or the count disagrees with the spectra."""
        spectra, detectors = _ids("spectrum numbers", spectra), _ids("detector ids", detectors)
        if len(spectra) != len(detectors):
            raise BadSpectrumMap(f"{len(spectra):,} spectrum numbers but {len(detectors):,} "
                                 "detector ids")
        if not len(spectra):
            raise BadSpectrumMap("it is empty")
        if len(spectra) > MAX_ENTRIES:
            raise BadSpectrumMap(f"{len(spectra):,} entries, more than {MAX_ENTRIES:,}")
        if spectra.min() < 0 or detectors.min() < 0:
            raise BadSpectrumMap("a spectrum number or detector id is negative")
        if spectra.max() > MAX_SPECTRUM:
            raise BadSpectrumMap(f"spectrum {spectra.max():,} is past {MAX_SPECTRUM:,}")
        by_detector = np.sort(detectors)
        twice = by_detector[1:][by_detector[1:] == by_detector[:-1]]
        if len(twice):
            raise BadSpectrumMap(f"detector {twice[0]} is in more than one spectrum")
        counted = spectra > 0  # spectrum 0, the dust-bin, counts nowhere
        numbers = np.unique(spectra[counted])
        if not len(numbers):
            raise BadSpectrumMap("every detector is in spectrum 0 (the dust-bin)")
        # the count as run control sends it (spectra > 0), or counting spectrum 0, or as the
        # highest spectrum number (the ICP's NSP1): any other is a map at odds with itself
        allowed = {len(numbers), len(numbers) + int(not counted.all()), int(numbers[-1])}
        if not isinstance(n_spectra, (int, np.integer)) or int(n_spectra) not in allowed:
            raise BadSpectrumMap(f"it says {n_spectra!r} spectra but names {len(numbers):,}, "
                                 f"the highest {numbers[-1]:,}")
        spectra, detectors = spectra[counted], detectors[counted]
        rows = detectors - first_pixel
        binned = (rows >= 0) & (rows < n_pixels)
        # grouped by spectrum, rows ascending within each: a spectrum's rows are often
        # adjacent, and its read then copies one block
        order = np.lexsort((rows[binned], spectra[binned]))
        kept_spectra = spectra[binned][order]
        starts = np.searchsorted(kept_spectra, numbers, side="left")
        return cls(int(numbers[-1]), numbers,
                   np.append(starts, len(kept_spectra)).astype(np.int64),
                   rows[binned][order], True, int((~binned).sum()))

    @property
    def last(self) -> int:
        """The highest spectrum number the DAE's spectrum PVs serve (from 0)."""
        return max(self.n_spectra, int(self.numbers[-1]) if len(self.numbers) else 0,
                   *(s for s, _ in self.monitors))

    def named(self) -> tuple[int, int] | None:
        """The lowest and highest spectrum with a detector or a monitor (None: none)."""
        ends = [s for s, _ in self.monitors]
        if len(self.numbers):
            ends += [int(self.numbers[0]), int(self.numbers[-1])]
        return (min(ends), max(ends)) if ends else None

    @property
    def monitor_sources(self) -> tuple[str, ...]:
        return tuple(source for _, source in self.monitors)

    def monitor_at(self, spectrum: int) -> str | None:
        """The source of the monitor served as this spectrum; None if it is no monitor's."""
        return next((source for s, source in self.monitors if s == spectrum), None)

    def with_monitors(self, monitors: list[tuple[int, str]]) -> SpectrumMap:
        """This map with these monitors' spectra (none a detector's: the caller checked);
        NUMSPECTRA covers them, as the ICP's NSP1 counts every spectrum."""
        ordered = tuple(sorted(monitors))
        highest = max((s for s, _ in ordered), default=0)
        return dataclasses.replace(self, monitors=ordered,
                                   n_spectra=max(self.n_spectra, highest))

    def rows_of(self, spectrum: int) -> np.ndarray:
        """A spectrum's histogram rows; none for a spectrum with no binned detector."""
        i = int(np.searchsorted(self.numbers, spectrum))
        if i < len(self.numbers) and self.numbers[i] == spectrum:
            return self.rows[self.starts[i]:self.starts[i + 1]]
        return self.rows[:0]

    def spectrum_of_rows(self) -> np.ndarray:
        """Each of `rows`' spectrum number."""
        return np.repeat(self.numbers, np.diff(self.starts))


def for_run(pl72_map: Any, first_pixel: int, n_pixels: int) -> tuple[SpectrumMap, str]:
    """The run's map from its pl72's `detector_spectrum_map` (None: one spectrum a pixel),
    and a warning to log ("" if none). A map the live view cannot follow is not a run it
    stops following: its spectra are then one a pixel, and the warning says why."""
    fallback = SpectrumMap.one_a_pixel(first_pixel, n_pixels)
    if pl72_map is None:
        return fallback, ""
    try:
        made = SpectrumMap.from_map(pl72_map.spectrum_numbers, pl72_map.detector_ids,
                                    pl72_map.n_spectra, first_pixel, n_pixels)
    except BadSpectrumMap as exc:
        return fallback, (f"its detector-spectrum map is not followed ({exc}): the DAE's "
                          "spectra are one a pixel for this run")
    warning = ""
    if made.unbinned:
        warning = (f"{made.unbinned:,} detectors of its detector-spectrum map are outside the "
                   f"pixels {first_pixel}..{first_pixel + n_pixels - 1} the live view bins: "
                   "their spectra are shown without them")
    return made, warning


def _ids(name: str, values: Any) -> np.ndarray:
    """A vector of whole numbers, as int64 (flatbuffers gives 0, not an array, for a vector
    the message lacks)."""
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise BadSpectrumMap(f"its {name} are not a vector")
    if not np.issubdtype(values.dtype, np.integer):
        raise BadSpectrumMap(f"its {name} are not whole numbers")
    return values.astype(np.int64)
