"""Which spectrum each beam monitor is on the DAE's spectrum PVs, from the run start: the
isis_histogram module's config in the pl72's nexus_structure (run control's template,
ioc.nexus_template), `"monitors": [{"source", "detector_id", "spectrum", "name"}]`, numbered
as the file writer numbers its monitor_hist_<i> (filewriter.modules.isis_histogram): a
monitor's own "spectrum" if it has one, else the i-th (from 1, in the list's order) after
the detectors' highest spectrum. Pure: a run start's structure in, spectra out.

No isis_histogram config (an older or ESS-style structure): no monitor is a spectrum, as
before. What the live view cannot follow is said in a warning and never stops the run
being followed: a malformed config serves no monitor; a monitor the file would make
ambiguous (its spectrum a detector's or another monitor's, its source the detector's or
another monitor's) is not served, rather than shown mixed with other counts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from liveview.spectrum_map import MAX_SPECTRUM, SpectrumMap

MODULE = "isis_histogram"
# monitors served at most: each is a histogram of channels x periods (ISIS instruments have
# a handful); a list past this is not an instrument's
MAX_MONITORS = 256


class BadMonitors(ValueError):
    """The run's monitors config is not one the live view can follow; the message says why."""


def histogram_config(nexus_structure: str | None) -> dict[str, Any] | None:
    """The first isis_histogram module's config in a nexus_structure (JSON), None if there
    is none. BadMonitors if the structure is not JSON or the config not an object."""
    try:
        tree = json.loads(nexus_structure or "{}")
    except (ValueError, RecursionError) as exc:
        raise BadMonitors(f"its nexus_structure is not JSON ({exc})") from None
    # down "children" only, without recursion: a structure's depth is the sender's word,
    # and its datasets' values (geometry) are no place for a module
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            if node.get("module") == MODULE:
                config = node.get("config")
                if not isinstance(config, dict):
                    raise BadMonitors(f"its {MODULE} config is not an object")
                return config
            children = node.get("children")
            if isinstance(children, list):
                stack.extend(reversed(children))
    return None


def configured(raw: Any, after: int) -> list[tuple[str, int, str]]:
    """(source, spectrum, name) of each monitor of a config's "monitors" (None: none), its
    spectrum by the file writer's default rule where it has none (or 0, the dust-bin, which
    the file writer takes as none). BadMonitors if it is malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadMonitors("its monitors are not a list")
    if len(raw) > MAX_MONITORS:
        raise BadMonitors(f"{len(raw):,} monitors, more than {MAX_MONITORS}")
    out = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("source"), str) or not m["source"]:
            raise BadMonitors(f"monitor {i} is not an object with a source name")
        spectrum = m.get("spectrum")
        if spectrum is None or spectrum == 0:  # False too: the file writer's `or`
            spectrum = after + i
        if isinstance(spectrum, bool) or not isinstance(spectrum, int) or not (
                0 < spectrum <= MAX_SPECTRUM):
            raise BadMonitors(f"monitor {i}'s spectrum {spectrum!r} is not a spectrum number")
        name = m.get("name")
        out.append((m["source"], spectrum, name if isinstance(name, str) and name
                    else f"monitor_{i}"))
    return out


def for_run(nexus_structure: str | None, spectra: SpectrumMap,
            detector_source: str) -> tuple[SpectrumMap, list[str]]:
    """The run's spectra with its monitors served (those the live view can follow), and
    warnings to log. `spectra`: the detectors', as the live view serves them;
    `detector_source`: the detector's events' source."""
    try:
        config = histogram_config(nexus_structure)
        if config is None:
            return spectra, []
        monitors = configured(config.get("monitors"), _highest(config, spectra))
    except BadMonitors as exc:
        return spectra, [f"its monitors are not served as spectra: {exc}"]
    if not monitors:
        return spectra, []
    warnings = []
    by_source = Counter(source for source, _, _ in monitors)
    by_spectrum = Counter(spectrum for _, spectrum, _ in monitors)
    served = []
    for source, spectrum, name in monitors:
        why = ""
        if source == detector_source:
            why = f"its source {source!r} is the detector's"
        elif by_source[source] > 1:
            why = f"its source {source!r} is another monitor's too"
        elif _named(spectra, spectrum):
            why = f"spectrum {spectrum} is a detector spectrum"
        elif by_spectrum[spectrum] > 1:
            why = f"spectrum {spectrum} is another monitor's too"
        if why:
            warnings.append(f"monitor {name} is not served as a spectrum: {why}")
        else:
            served.append((spectrum, source))
    return spectra.with_monitors(served), warnings


def _named(spectra: SpectrumMap, spectrum: int) -> bool:
    """Whether the detectors' map names a spectrum (its detectors binned here or not)."""
    i = int(np.searchsorted(spectra.numbers, spectrum))
    return i < len(spectra.numbers) and int(spectra.numbers[i]) == spectrum


def _highest(config: dict[str, Any], spectra: SpectrumMap) -> int:
    """The detectors' highest spectrum, after which the file writer numbers monitors with
    none: the pl72 map's; without one, the module config's pixels from its first_pixel (one
    spectrum a pixel, as the file writer's histogram then is), else the live view's."""
    pixels, first = config.get("pixels"), config.get("first_pixel", 1)
    if (not spectra.mapped and isinstance(pixels, int) and isinstance(first, int)
            and not isinstance(pixels, bool) and not isinstance(first, bool) and pixels > 0):
        return first + pixels - 1
    return int(spectra.numbers[-1]) if len(spectra.numbers) else 0
