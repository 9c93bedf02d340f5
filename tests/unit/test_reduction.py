"""The live reduction, part by part: each pixel's DIFC is scippneutron's to float rounding,
the kernels bin exactly as np.histogram on the same edges (linear and logarithmic), only good
frames' events are reduced (and monitors' too), a new run or new time channels empty it, the
binning setpoints refuse what is wrong and say why, and the da00 messages read back."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from datastream.geometry import load_geometry
from datastream.run_window import Window
from datastream.schemas.pu00 import PulseMetadata
from datastream.time_channels import TimeChannels
from liveview.reduction import ALL, Bins, Reduction, ReductionSettings, normalised
from liveview.reduction_binning import bin_dspacing, bin_scaled, guess
from liveview.reduction_run import ReducingHistogram
from tests.fakes import FakePut

GEOMETRY = Path(__file__).parents[1] / "system" / "SYS_geometry.toml"


@pytest.fixture(scope="module")
def geometry():
    return load_geometry(GEOMETRY)


def scipp_dspacing(geometry, ids: np.ndarray, tof_ns: np.ndarray) -> np.ndarray:
    """d of each event as scippneutron computes it from positions, as check_geometry does."""
    import scipp as sc
    from scippneutron.conversion import graph

    order = np.searchsorted(geometry.pixel_ids(), ids)
    pos = geometry.pixel_positions()[order]
    events = sc.DataArray(
        sc.ones(dims=["event"], shape=[len(ids)], unit="counts"),
        coords={"position": sc.vectors(dims=["event"], values=pos, unit="m"),
                "source_position": sc.vector(geometry.source_position, unit="m"),
                "sample_position": sc.vector([0.0, 0.0, 0.0], unit="m"),
                "tof": sc.array(dims=["event"], values=tof_ns, unit="ns",
                                dtype="int32").to(dtype="float64", unit="us")})
    conversion = {**graph.beamline.beamline(scatter=True), **graph.tof.elastic("tof")}
    return events.transform_coords("dspacing", graph=conversion).coords["dspacing"].values


def random_events(geometry, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(geometry.pixel_ids(), n).astype(np.int32)
    return ids, rng.integers(0, 50_000_000, n).astype(np.int32)


def test_difc_is_scippneutrons_to_float_rounding(geometry):
    reduction = Reduction(geometry, ReductionSettings())
    ids, tof = random_events(geometry, 20_000)
    ours = tof * reduction.inv_difc[ids - reduction.first_pixel]
    theirs = scipp_dspacing(geometry, ids, tof)
    assert np.max(np.abs(ours - theirs) / theirs) < 1e-15  # a few ulps
    # and the 2θ helper agrees with the one the simulated DAE uses, away from 0 and 180
    assert np.allclose(geometry.scattering_angle(), geometry.two_theta(), atol=1e-12)


@pytest.mark.parametrize("logarithmic", [False, True])
def test_the_kernel_bins_as_np_histogram_on_the_same_edges(geometry, logarithmic):
    bins = Bins(0.3, 6.0, 777, logarithmic)
    reduction = Reduction(geometry, ReductionSettings(dspacing=bins, two_theta_bins=17))
    ids, tof = random_events(geometry, 200_000, seed=2)
    # events exactly on edges too: d = edge, from a tof chosen to hit it after rounding
    binned = reduction.add(ids, tof)
    got = reduction.snapshot()
    d = tof * reduction.inv_difc[ids - reduction.first_pixel]
    edges = bins.edges()
    bank = reduction.bank_of[ids - reduction.first_pixel]
    for i, name in enumerate(reduction.bank_names):
        expected, _ = np.histogram(d[bank == i], edges)
        assert np.array_equal(got.banks[name], expected), name
    total, _ = np.histogram(d, edges)
    assert np.array_equal(got.banks[ALL], total)
    assert binned == got.events == total.sum()
    assert got.outside == len(d) - total.sum()
    angle = np.degrees(geometry.scattering_angle())[
        np.searchsorted(geometry.pixel_ids(), ids)]
    image, _, _ = np.histogram2d(angle, d, [got.two_theta_edges_deg, edges])
    assert np.array_equal(got.image, image) and got.image.sum() == total.sum()


@pytest.mark.parametrize("bins", [Bins(0.1, 0.9, 8), Bins(0.1, 0.9, 8, True),
                                  Bins(0.01, 1000.0, 100_000, True)])  # a capped grid
def test_edges_decide_not_the_arithmetic(bins):
    """Values on an edge, a hair below it and the range's ends land as np.histogram puts them
    (the last edge excluded, as scipp's hist does)."""
    for logarithmic in (bins.logarithmic,):
        edges = bins.edges()
        x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
        hist = np.zeros(bins.bins, np.uint64)
        # a factor of 1: the "times of flight" are the values themselves
        outside = bin_scaled(hist, x, 1.0, edges, *guess(edges, logarithmic), logarithmic)
        inside = (x >= edges[0]) & (x < edges[-1])
        assert np.array_equal(hist, np.histogram(x[inside], edges)[0])
        assert outside == (~inside).sum()


def test_hostile_pixel_ids_and_times_read_nothing():
    edges = np.linspace(1.0, 2.0, 5)
    by_bank, by_angle = np.zeros((1, 4), np.uint64), np.zeros((1, 4), np.uint64)
    table = np.array([1e-3, 1e-3]), np.array([0, -1], np.int32)
    ids = np.array([-2**31, 0, 2, 3, 2**31 - 1, 1], np.int32)
    tof = np.array([1500, 1500, 1500, 1500, 1500, -5], np.int32)
    for logarithmic in (False, True):
        no_pixel, outside = bin_dspacing(by_bank, by_angle, ids, tof, 1, *table, edges,
                                         guess(edges, logarithmic), logarithmic)
        assert (no_pixel, outside) == (5, 1) and by_bank.sum() == 0
    with pytest.raises(ValueError):
        bin_dspacing(by_bank, by_angle, ids[:2], tof, 1, *table, edges, guess(edges, False),
                     False)
    with pytest.raises(ValueError):  # a pixel's row past the histograms
        bin_dspacing(by_bank, by_angle, ids, tof, 1, table[0], np.array([1 << 16, 0], np.int32),
                     edges, guess(edges, False), False)


def test_wavelength_of_a_monitor_is_scippneutrons(geometry):
    import scipp as sc
    from scippneutron.conversion.tof import wavelength_from_tof

    reduction = Reduction(geometry, ReductionSettings.from_table({}, geometry, 50e6))
    tof = np.arange(0, 50_000_000, 997, dtype=np.int32)
    factor = reduction.monitor_factor["monitor_1"]
    theirs = wavelength_from_tof(
        tof=sc.array(dims=["e"], values=tof, unit="ns", dtype="int32").to(
            dtype="float64", unit="us"), Ltotal=sc.scalar(9.0, unit="m")).values
    assert np.max(np.abs(tof * factor - theirs) / np.maximum(theirs, 1e-300)) < 1e-15
    assert reduction.add_monitor("monitor_1", tof)
    lam = reduction.snapshot()
    inside = (theirs >= lam.wavelength_edges[0]) & (theirs < lam.wavelength_edges[-1])
    assert lam.monitors["monitor_1"].sum() == inside.sum() == len(tof)  # a frame's reach
    assert not reduction.add_monitor("not a monitor", tof)


@pytest.mark.parametrize("bins, reason", [
    (Bins(math.nan, 2.0, 10), "not a finite number"),
    (Bins(1.0, math.inf, 10), "not a finite number"),
    (Bins(2.0, 2.0, 10), "not below the maximum"),
    (Bins(3.0, 2.0, 10), "not below the maximum"),
    (Bins(-1.0, 2.0, 10), "outside 0 to 1000"),
    (Bins(1.0, 2.0, 0), "whole number from 1 to 100,000"),
    (Bins(1.0, 2.0, 10**9), "whole number from 1 to 100,000"),
    (Bins(0.0, 2.0, 10, True), "minimum above 0"),
])
def test_a_binning_is_checked_whole_and_says_why(bins, reason):
    with pytest.raises(ValueError, match=reason):
        bins.check()


def test_log_bins_have_equal_dd_over_d_and_exact_ends():
    bins = Bins(0.5, 5.0, 1000, True)
    edges = bins.edges()
    assert edges[0] == 0.5 and edges[-1] == 5.0
    assert np.allclose(np.diff(edges) / edges[:-1], bins.step, rtol=1e-9)
    assert Bins(1.0, 3.0, 4).step == 0.5


def test_liveview_table_gives_the_defaults_and_refuses_nonsense(geometry):
    s = ReductionSettings.from_table({"dspacing_min": 0.5, "dspacing_max": 3,
                                      "dspacing_bins": 250, "dspacing_log": True}, geometry,
                                     50e6)
    assert s.dspacing == Bins(0.5, 3.0, 250, True)
    assert s.normalise_monitor == "monitor_1"
    # a whole frame of the monitor's wavelengths at 9 m
    assert s.wavelength.high == pytest.approx(50e6 / 252_778.0 / 9.0)
    for table, reason in (({"dspacing_bins": 2.5}, "whole number"),
                          ({"dspacing_min": 6.0}, "not below"),
                          ({"dspacing_log": 1}, "true or false"),
                          ({"two_theta_bins": 0}, "two_theta_bins"),
                          ({"normalise_monitor": "m9"}, "not a monitor")):
        with pytest.raises(ValueError, match=reason):
            ReductionSettings.from_table(table, geometry, 50e6)


def pulse(t: int, vetos: int = 0, charge: float = 1.0) -> PulseMetadata:
    return PulseMetadata("DAE", t, t, vetos, 0, charge)


def test_only_good_frames_are_reduced_and_a_reset_empties_it(geometry):
    reduction = Reduction(geometry, ReductionSettings(dspacing=Bins(0.0, 50.0, 100)))
    hist = ReducingHistogram(reduction, 1, 1024, TimeChannels(0, 5e7, 10), max_periods=1)
    hist.reset(Window(1000, 10_000))
    ids, tof = np.array([1, 2, 800], np.int32), np.array([1000, 20_000, 30_000], np.int32)

    def events(message_id: int, t: int) -> int:
        return hist.add(message_id, np.array([t]), np.array([0]), tof, ids)

    hist.add_pulse(pulse(2000))
    hist.add_pulse(pulse(3000, vetos=1))
    assert events(1, 2000) == 3
    assert events(2, 3000) == 0  # a vetoed frame's: not data
    assert events(1, 2000) == 0  # a repeat
    assert events(3, 20_000) == 0  # past the run
    hist.add_pulse(pulse(4000))
    hist.add_pulse(PulseMetadata("DAE", 9, 4000, 0, 3, 1.0))  # repeated pu00: ignored
    assert events(4, 4000) == 3  # a period past those binned: reduced all the same
    got = reduction.snapshot()
    assert got.events == 6 == hist.snapshot()["events"]
    # monitors: not of a vetoed frame, not repeated, within the run
    m = np.array([10_000_000, 20_000_000], np.int32)
    mid = np.full(2, 100001, np.int32)
    assert hist.add_monitor("monitor_1", 7, np.array([2000]), np.array([0]), m, mid) == 2
    assert hist.add_monitor("monitor_1", 7, np.array([2000]), np.array([0]), m, mid) == 0
    assert hist.add_monitor("monitor_1", 8, np.array([3000]), np.array([0]), m, mid) == 0
    assert hist.add_monitor("monitor_1", 9, np.array([3000, 4000]), np.array([0, 1]), m,
                            mid) == 1
    assert reduction.snapshot().monitor_counts == 3
    # load shed: counted, not binned, not reduced
    hist.add_pulse(pulse(5000))
    hist.add(5, np.array([5000]), np.array([0]), tof, ids, bin_events=False)
    assert reduction.snapshot().events == 6
    hist.reset(Window(1000, 10_000))
    assert reduction.snapshot().events == 0 and reduction.snapshot().monitor_counts == 0
    # a new histogram (new time channels: the run read again) empties it too
    events(6, 2000)
    ReducingHistogram(reduction, 1, 1024, TimeChannels(0, 5e7, 20))
    assert reduction.snapshot().events == 0


def test_a_monitor_s_spectrum_and_its_wavelengths_are_the_same_events(geometry):
    """One selection of a monitor's events (RunHistogram.add_monitor) feeds its DAE spectrum
    and I(λ) alike; a monitor served but not in the geometry is binned, not reduced."""
    reduction = Reduction(geometry, ReductionSettings(dspacing=Bins(0.0, 50.0, 100)))
    hist = ReducingHistogram(reduction, 1, 1024, TimeChannels(0, 5e7, 10), max_periods=1)
    hist.reset(Window(1000, 10_000), ("monitor_1", "elsewhere"))
    hist.add_pulse(pulse(2000))
    hist.add_pulse(pulse(3000, vetos=1))
    m = np.array([10_000_000, 20_000_000], np.int32)
    mid = np.full(2, 100001, np.int32)
    for name in ("monitor_1", "elsewhere"):
        assert hist.add_monitor(name, 1, np.array([2000, 3000]), np.array([0, 1]), m,
                                mid) == 1
    assert hist.monitor("monitor_1", 0).tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert hist.monitor("elsewhere", 0).tolist() == hist.monitor("monitor_1", 0).tolist()
    assert reduction.snapshot().monitor_counts == 1
    assert set(reduction.snapshot().monitors) == {"monitor_1"}


def test_normalised_is_zero_until_there_is_something_to_divide_by():
    counts = np.array([2, 4], np.uint64)
    assert normalised(counts, None).tolist() == [0, 0] == normalised(counts, 0.0).tolist()
    assert normalised(counts, 2.0).tolist() == [1.0, 2.0]


def test_setpoints_refuse_with_the_reason_and_a_new_binning_empties_the_histograms(geometry):
    from liveview.reduction_pvs import ReductionPVs

    reduction = Reduction(geometry, ReductionSettings(dspacing=Bins(0.5, 3.0, 100)))
    pvs = ReductionPVs("T:LIVE:", reduction)
    names = set(pvs.static())
    for expected in ("T:LIVE:DSPACING:PANEL:X", "T:LIVE:DSPACING:BACKSCATTER:Y",
                     "T:LIVE:DSPACING:ALL:XE", "T:LIVE:DSPACING:ALL:Y_PER_MONITOR",
                     "T:LIVE:DSPACING:ALL:Y_PER_UAH", "T:LIVE:DSPACING:IMAGE",
                     "T:LIVE:DSPACING:IMAGE:TWO_THETA", "T:LIVE:LAMBDA:MONITOR_1:Y",
                     "T:LIVE:DSPACING:MIN:SP", "T:LIVE:DSPACING:BINS:SP", "T:LIVE:DSPACING:STEP"):
        assert expected in names, expected
    ids, tof = random_events(geometry, 1000)
    reduction.add(ids, tof)
    assert reduction.snapshot().events > 0
    sp = pvs.setpoints
    for name, value, reason in (("DSPACING:MIN:SP", math.nan, "not a finite number"),
                                ("DSPACING:MIN:SP", 3.0, "not below the maximum"),
                                ("DSPACING:MAX:SP", 1e9, "outside 0 to 1000"),
                                ("DSPACING:BINS:SP", 2.5, "whole number"),
                                ("DSPACING:BINS:SP", 10**7, "outside 1 to 100000"),
                                ("DSPACING:LOG:SP", 2, "outside 0 to 1"),
                                ("DSPACING:BINS:SP", "many", "not a number")):
        put = FakePut(value)
        sp[name]._handler.put(sp[name], put)
        assert put.error and reason in put.error, (name, value, put.error)
    assert reduction.bins == Bins(0.5, 3.0, 100) and reduction.snapshot().events > 0
    posted = []
    put = FakePut(1)
    sp["DSPACING:LOG:SP"]._handler.put(SimpleNamespace(post=posted.append), put)
    assert put.ok and posted == [1.0]
    assert reduction.bins == Bins(0.5, 3.0, 100, True)
    assert reduction.snapshot().events == 0  # a new binning starts again
    reduced = pvs.update(2.0)
    assert len(reduced.edges) == 101
    assert pvs._pvs["DSPACING:STEP"].current() == pytest.approx(6 ** 0.01 - 1)


def test_da00_messages_read_back_as_their_data_arrays(geometry):
    from streaming_data_types.dataarray_da00 import deserialise_da00

    from liveview.reduction_da00 import Da00Publisher, messages

    reduction = Reduction(geometry, ReductionSettings(dspacing=Bins(0.5, 3.0, 50),
                                                      two_theta_bins=7))
    ids, tof = random_events(geometry, 5000)
    reduction.add(ids, tof)
    reduced = reduction.snapshot()
    out = dict(messages(reduced, 123))
    assert set(out) == {"dspacing/PANEL", "dspacing/BACKSCATTER", "dspacing/ALL",
                        "dspacing/IMAGE", "wavelength/MONITOR_1"}
    msg = deserialise_da00(out["dspacing/ALL"])
    assert msg.source_name == "dspacing/ALL" and msg.timestamp_ns == 123
    data = {v.name: v for v in msg.data}
    assert np.array_equal(data["signal"].data, reduced.banks[ALL])
    assert data["signal"].axes == ["dspacing"] and data["dspacing"].unit == "angstrom"
    assert np.array_equal(data["dspacing"].data, reduced.edges)
    image = {v.name: v for v in deserialise_da00(out["dspacing/IMAGE"]).data}
    assert image["signal"].data.shape == (7, 50) and image["signal"].axes == [
        "two_theta", "dspacing"]
    assert np.array_equal(image["signal"].data, reduced.image)

    sent = []

    class Producer:
        def produce(self, topic, payload, key, on_delivery):
            sent.append((topic, key))

        def poll(self, timeout):
            return 0

        def flush(self, timeout):
            return 0

    publisher = Da00Publisher(Producer(), "X_liveHistograms")
    assert publisher.publish(reduced) == 5
    assert publisher.publish(reduced) == 0  # nothing new: nothing sent
    reduction.add(ids, tof)
    assert publisher.publish(reduction.snapshot()) == 5
    assert {t for t, _ in sent} == {"X_liveHistograms"}


def test_a_capped_grid_still_bins_every_event_by_the_edges(geometry):
    """100,000 logarithmic bins over five decades: the grid is capped, a cell spans many
    bins and the kernel searches for those after each chunk; the counts are np.histogram's."""
    bins = Bins(0.01, 1000.0, 100_000, True)
    reduction = Reduction(geometry, ReductionSettings(dspacing=bins, two_theta_bins=3))
    ids, tof = random_events(geometry, 100_000, seed=4)
    reduction.add(ids, tof)
    d = tof * reduction.inv_difc[ids - reduction.first_pixel]
    assert np.array_equal(reduction.snapshot().banks[ALL], np.histogram(d, bins.edges())[0])
