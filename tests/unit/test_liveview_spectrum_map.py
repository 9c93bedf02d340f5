"""The live view's DAE spectra follow the run's pl72 detector-spectrum map
(liveview.spectrum_map, dae_arrays): a spectrum is the sum of its pixels, as the file
writer's ICP histogram sums them; spectrum 0 (the dust-bin) counts nowhere; no map is one
spectrum a pixel; a malformed map falls back to one a pixel, saying why."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datastream.paths import IOCBOOT_DIR
from datastream.run_window import Window
from datastream.time_channels import TimeChannels
from filewriter.modules.isis_histogram import SpectrumMap as WriterMap
from ioc.dae_tables import DaeTables
from ioc.isis_tables import parse_spectra
from liveview import dae_arrays, spectrum_map
from liveview.run_histogram import RunHistogram
from liveview.spectrum_map import SpectrumMap, for_run

CHANNELS = 5
PERIODS = 2
# pixels 1..16: pixel 1 in the dust-bin (spectrum 0); pixels 2..9 spectra 1..8, one each;
# then groups whose pixels are neither adjacent nor in order (spectrum 9 is pixels 16 and
# 10); spectrum 11 is missing (a gap: it reads as zeros); pixel 15 is in no spectrum
GROUPED = {0: [1], **{s: [s + 1] for s in range(1, 9)}, 9: [16, 10], 10: [13, 11, 12],
           12: [14]}


def as_map(groups: dict[int, list[int]], dust: bool = True) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(s, d) for s, ds in groups.items() for d in ds if dust or s]
    rng = np.random.default_rng(3)
    order = rng.permutation(len(pairs))  # a map's entries come in any order
    spectra, detectors = np.array(pairs, np.int32)[order].T
    return spectra, detectors


def histogram() -> RunHistogram:
    """Pixels 1..16, counts that differ by pixel, channel and period."""
    hist = RunHistogram(1, 16, TimeChannels(0, CHANNELS * 1000, CHANNELS), PERIODS)
    hist.reset(Window(0, None))
    rng = np.random.default_rng(7)
    message = 0
    for period in range(PERIODS):
        for pixel in range(1, 17):
            message += 1
            tof = rng.integers(0, CHANNELS * 1000, rng.integers(5, 40)).astype(np.int32)
            hist.add(message, np.array([message]), np.array([0]), tof,
                     np.full(len(tof), pixel, np.int32), period=period)
    return hist


def writer_counts(hist: RunHistogram, spectra: np.ndarray,
                  detectors: np.ndarray) -> dict[int, np.ndarray]:
    """Each spectrum's counts [period, channel] as the file writer's histogram sums them:
    its own map (filewriter.modules.isis_histogram.SpectrumMap) places each pixel's row."""
    writer = WriterMap.build(spectra, detectors)
    pixels = np.arange(1, 17)
    rows, first = writer.rows_of(pixels)
    rows = rows - first
    out = {int(s): np.zeros((PERIODS, CHANNELS), np.int64) for s in writer.spectra}
    for pixel, row in zip(pixels, rows, strict=True):
        if 0 <= row < len(writer.spectra):
            for p in range(PERIODS):
                out[int(writer.spectra[row])][p] += hist.rows(p, pixel - 1, pixel)[0]
    return out


def test_a_spectrum_is_the_sum_of_its_pixels_as_the_file_has_it(monkeypatch):
    hist = histogram()
    spectra, detectors = as_map(GROUPED, dust=False)  # as run control sends it
    live = SpectrumMap.from_map(spectra, detectors, len(set(spectra.tolist())), 1, 16)
    assert live.n_spectra == 12 and live.last == 12  # the highest: 11 is a gap
    expected = writer_counts(hist, spectra, detectors)
    cube = dae_arrays.spec_data(hist, live, PERIODS, 10**6).reshape(PERIODS, 13, CHANNELS + 1)
    integrals = dae_arrays.spec_integrals(hist, live, PERIODS, 10**6).reshape(PERIODS, 13)
    for s in range(13):
        want = expected.get(s, np.zeros((PERIODS, CHANNELS), np.int64))
        for p in range(PERIODS):
            got = dae_arrays.spectrum_value(hist, live, p + 1, s, "YC")
            assert got.tolist() == want[p].tolist(), (s, p)
            assert cube[p, s, 1:].tolist() == want[p].tolist(), (s, p)
            assert integrals[p, s] == want[p].sum(), (s, p)
    assert not cube[:, :, 0].any()  # the junk bin
    assert not cube[:, 0].any() and not cube[:, 11].any()  # the dust-bin and the gap
    # pixel 1 (dust-bin) and pixel 15 (no spectrum) are in none
    assert integrals.sum() == sum(hist.rows(p, 0, 16)[[i - 1 for i in range(2, 17)
                                                       if i != 15]].sum()
                                  for p in range(PERIODS))
    # SPECDATA copied two rows at a time: a spectrum across two copies sums the same
    monkeypatch.setattr(dae_arrays, "ROWS_CHUNK", 2)
    assert dae_arrays.spec_data(hist, live, PERIODS, 10**6).tolist() == cube.ravel().tolist()
    assert dae_arrays.spec_data(hist, live, PERIODS, 50).tolist() == cube.ravel()[:50].tolist()
    assert dae_arrays.spec_integrals(hist, live, PERIODS, 20).tolist() == \
        integrals.ravel()[:20].tolist()


def test_spectrum_0_the_dust_bin_counts_nowhere():
    hist = histogram()
    with_dust = SpectrumMap.from_map(*as_map(GROUPED), 11, 1, 16)  # spectra > 0 counted
    without = SpectrumMap.from_map(*as_map(GROUPED, dust=False), 11, 1, 16)
    assert len(with_dust.rows_of(0)) == 0 and with_dust.rows_of(9).tolist() == [9, 15]
    assert dae_arrays.spec_data(hist, with_dust, 2, 10**6).tolist() == \
        dae_arrays.spec_data(hist, without, 2, 10**6).tolist()
    assert not dae_arrays.spectrum_value(hist, with_dust, 1, 0, "YC").any()
    # the count may count spectrum 0 (12) or be the highest spectrum (12 too here)
    assert SpectrumMap.from_map(*as_map(GROUPED), 12, 1, 16).n_spectra == 12


def test_no_map_is_one_spectrum_a_pixel():
    hist = histogram()
    one, warning = for_run(None, 1, 16)
    assert warning == "" and not one.mapped and one.n_spectra == one.last == 16
    assert one.rows_of(5).tolist() == [4] and len(one.rows_of(0)) == 0
    for s in (1, 7, 16):
        assert dae_arrays.spectrum_value(hist, one, 2, s, "YC").tolist() == \
            hist.spectrum(s, 1).tolist()
    # the geometry's one-to-one map, as run control sends it without a spectra table,
    # serves the same spectra
    ids = np.arange(1, 17, dtype=np.int32)
    mapped, warning = for_run(SimpleNamespace(spectrum_numbers=ids, detector_ids=ids,
                                              n_spectra=16), 1, 16)
    assert warning == "" and mapped.mapped and mapped.n_spectra == 16
    assert dae_arrays.spec_data(hist, mapped, 2, 10**6).tolist() == \
        dae_arrays.spec_data(hist, one, 2, 10**6).tolist()


def test_demo_s_backscatter_pairs_table():
    """DEMO's table: the backscatter bank's pixels 3073..4096 in pairs, 3,584 spectra; its
    monitor (spectrum 3585) is binned apart, not a spectrum of the map."""
    table = parse_spectra((IOCBOOT_DIR / "DEMO" / "tables" /
                           "spectra_DEMO_backscatter_pairs.dat").read_text())
    spectra, detectors = DaeTables(spectra=table, monitors=(100001,)).spectrum_map()
    live = SpectrumMap.from_map(spectra.astype(np.int32), detectors.astype(np.int32), 3584,
                                1, 4096)
    assert live.n_spectra == 3584 and live.unbinned == 0
    assert live.rows_of(3072).tolist() == [3071]
    assert live.rows_of(3073).tolist() == [3072, 3073]  # pixels 3073 + 3074
    assert live.rows_of(3584).tolist() == [4094, 4095]
    assert len(live.rows_of(3585)) == 0


def _raw(spectra, detectors, n_spectra):
    return SimpleNamespace(spectrum_numbers=spectra, detector_ids=detectors,
                           n_spectra=n_spectra)


I32 = lambda *v: np.array(v, np.int32)  # noqa: E731


@pytest.mark.parametrize(("raw", "reason"), [
    (_raw(I32(1, 2, 3), I32(1, 2), 3), "3 spectrum numbers but 2 detector ids"),
    (_raw(I32(), I32(), 0), "it is empty"),
    (_raw(0, 0, 0), "spectrum numbers are not a vector"),  # flatbuffers: no vector
    (_raw(np.array([1.5]), I32(1), 1), "not whole numbers"),
    (_raw(I32(1, -2), I32(1, 2), 2), "negative"),
    (_raw(I32(1, 2), I32(1, -2), 2), "negative"),
    (_raw(I32(1, 2**31 - 1), I32(1, 2), 2), "is past"),
    (_raw(I32(1, 2), I32(3, 3), 2), "detector 3 is in more than one spectrum"),
    (_raw(I32(1, 2), I32(1, 2), 5), "it says 5 spectra but names 2"),
    (_raw(I32(1, 2), I32(1, 2), "2"), "it says '2' spectra"),
    (_raw(I32(0, 0), I32(1, 2), 0), "every detector is in spectrum 0"),
    (_raw(np.ones((2, 2), np.int32), I32(1, 2), 1), "not a vector"),
])
def test_a_malformed_map_falls_back_to_one_a_pixel_saying_why(raw, reason):
    made, warning = for_run(raw, 1, 16)
    assert not made.mapped and made.n_spectra == 16 and made.rows_of(3).tolist() == [2]
    assert reason in warning and "one a pixel" in warning


def test_an_absurdly_long_map_falls_back(monkeypatch):
    monkeypatch.setattr(spectrum_map, "MAX_ENTRIES", 3)
    made, warning = for_run(_raw(I32(1, 2, 3, 4), I32(1, 2, 3, 4), 4), 1, 16)
    assert not made.mapped and "4 entries, more than 3" in warning


def test_detectors_the_live_view_does_not_bin_are_said():
    made, warning = for_run(_raw(I32(1, 1, 2), I32(16, 17, 900), 2), 1, 16)
    assert made.mapped and made.unbinned == 2 and "2 detectors" in warning
    assert made.rows_of(1).tolist() == [15] and len(made.rows_of(2)) == 0
    hist = histogram()
    assert not dae_arrays.spectrum_value(hist, made, 1, 2, "YC").any()
    assert dae_arrays.spec_integrals(hist, made, 1, 100).tolist() == [
        0, hist.rows(0, 15, 16).sum(), 0]


_any_int32 = st.one_of(st.integers(-3, 40), st.sampled_from([-(2**31), 2**31 - 1, 2**24 + 1]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(_any_int32, _any_int32), max_size=30),
       extra=st.lists(_any_int32, max_size=2), n_spectra=_any_int32)
def test_any_map_is_followed_or_refused_never_an_error(pairs, extra, n_spectra):
    """Whatever a pl72 carries: a map the DAE's spectra follow (each binned pixel in at most
    one spectrum, the integrals those pixels' counts), or one a pixel with a warning."""
    spectra = np.array([s for s, _ in pairs] + extra, np.int32)
    detectors = np.array([d for _, d in pairs], np.int32)
    made, warning = for_run(_raw(spectra, detectors, n_spectra), 1, 16)
    assert made.mapped != ("one a pixel" in warning)
    hist = histogram()
    integrals = dae_arrays.spec_integrals(hist, made, 1, 10**6)
    data = dae_arrays.spec_data(hist, made, 1, 10**6).reshape(-1, CHANNELS + 1)
    assert data.sum(axis=1).tolist() == integrals.tolist()
    assert integrals[0] == 0 or not made.mapped
    if made.mapped:
        counted = {d for s, d in pairs if s > 0 and 1 <= d <= 16}
        assert integrals.sum() == sum(hist.rows(0, d - 1, d).sum() for d in counted)
