"""The live view's pure parts: which run it follows, and what it counts of it."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.run_window import Window
from datastream.time_channels import TimeChannels
from liveview.run_follower import RunStarted, RunStopped, decide
from liveview.run_histogram import RunHistogram

JOB = "0c8f7a0e-3a57-4ad7-a5a1-2f9b5bb0f0a1"
MS = 1_000_000


def test_dae_runs_are_followed_and_other_jobs_are_not():
    start = serialise_pl72(JOB, "X1.nxs", start_time=1000, run_name="00000001",
                           nexus_structure="{}")
    assert decide(start, "") == RunStarted(JOB, "00000001", 1000 * MS, None)
    calibration = serialise_pl72(JOB, "CAL.nxs", start_time=1000, nexus_structure="{}")
    assert decide(calibration, "") is None  # a write job without a run
    stop = serialise_6s4t(JOB, command_id=JOB, stop_time=2000)
    assert decide(stop, JOB) == RunStopped(JOB, 2000 * MS)
    assert decide(stop, "another job") is None
    assert decide(b"\0\0\0\0x5f2", JOB) is None


def test_time_channels_are_checked():
    assert len(TimeChannels(0, 100, 10).edges()) == 11
    assert TimeChannels(10, 1000, 2, logarithmic=True).edges()[1] == pytest.approx(100)
    with pytest.raises(ValueError):
        TimeChannels(0, 100, 10, logarithmic=True)
    with pytest.raises(ValueError):
        TimeChannels(100, 100, 10)


def frame(hist, message_id, t_ns, pixels, tofs):
    return hist.add(message_id, np.array([t_ns]), np.array([0]), np.asarray(tofs, np.int32),
                    np.asarray(pixels, np.int32))


def test_the_run_window_the_repeats_and_what_falls_outside_are_counted_as_the_writer_does():
    hist = RunHistogram(first_pixel=1, n_pixels=4, channels=TimeChannels(0, 100, 10))
    assert frame(hist, 1, 5, [1], [1]) == 0  # no run yet
    hist.reset(Window(10, None))
    assert frame(hist, 2, 5, [1], [1]) == 0  # before the start
    assert frame(hist, 3, 10, [1, 2, 9], [5, 15, 5]) == 3  # pixel 9 is outside: counted
    assert frame(hist, 3, 10, [1, 2, 9], [5, 15, 5]) == 0  # sent again
    hist.set_stop(30)
    assert frame(hist, 4, 20, [4], [99]) == 1
    assert frame(hist, 5, 30, [1], [1]) == 0  # at the stop: after the run
    snap = hist.snapshot()
    assert (snap["events"], snap["frames"], snap["outside"], snap["repeated"]) == (4, 2, 1, 1)
    assert hist.spectrum().sum() == 3 and hist.spectrum(2).tolist()[1] == 1
    # a message holding pulses in and out of the run: only the run's pulses
    hist.reset(Window(100, 200))
    taken = hist.add(6, np.array([50, 150, 250]), np.array([0, 2, 3]),
                     np.array([1, 2, 3, 4, 5], np.int32), np.array([1, 1, 2, 3, 4], np.int32))
    assert taken == 1 and hist.snapshot()["frames"] == 1


def test_each_period_has_its_own_histogram_and_the_readers_sum_them():
    hist = RunHistogram(first_pixel=1, n_pixels=4, channels=TimeChannels(0, 100, 10),
                        max_periods=3)
    hist.reset(Window(0, None))
    assert hist.periods == 1
    one = {"reference_time": np.array([10]), "reference_index": np.array([0])}
    assert hist.add(1, **one, tof=np.array([5, 5], np.int32),
                    pixel_id=np.array([1, 2], np.int32), period=0) == 2
    assert hist.add(2, np.array([20]), np.array([0]), np.array([15], np.int32),
                    np.array([2], np.int32), period=2) == 1  # period 1 skipped: grown to 3
    assert hist.periods == 3
    assert hist.spectrum(2, period=0).tolist()[0] == 1
    assert hist.spectrum(2, period=2).tolist()[1] == 1 and hist.spectrum(2, 1).sum() == 0
    assert hist.spectrum(2).tolist()[:2] == [1, 1]  # all periods
    assert hist.pixel_totals(period=2).tolist() == [0, 1, 0, 0]
    assert hist.pixel_totals().tolist() == [1, 2, 0, 0]
    assert hist.spectrum_of(np.array([1, 2]), period=0).sum() == 2
    assert hist.spectrum(1, period=7).sum() == 0  # not seen: zeros
    # past max_periods: counted, not binned
    assert hist.add(3, np.array([30]), np.array([0]), np.array([5], np.int32),
                    np.array([1], np.int32), period=3) == 1
    snap = hist.snapshot()
    assert (snap["events"], snap["frames"], snap["outside"]) == (4, 3, 1)
    # the frame of period 4 is a frame of the run (NUMPERIODS shows it), its events not binned
    assert snap["period_events"] == [2, 0, 1, 0] and snap["period_frames"] == [1, 0, 1, 1]
    assert snap["periods"] == 4 and hist.spectrum().sum() == 3
    hist.reset(Window(0, None))  # a new run: one period again
    assert hist.periods == 1 and hist.snapshot()["period_events"] == [0]


def test_a_histogram_larger_than_the_caches_counts_every_event():
    small = RunHistogram(1, 5000, TimeChannels(0, 1000, 2000))  # 10M bins, 40 MB
    rng = np.random.default_rng(5)
    pixels = rng.integers(1, 5001, 10_000, dtype=np.int32)
    tofs = rng.integers(0, 1000, 10_000, dtype=np.int32)
    small.reset(Window(0, None))
    assert frame(small, 1, 10, pixels, tofs) == 10_000
    assert small.counts.sum() == 10_000
    assert small.counts[0, pixels[0] - 1, tofs[0] * 2] >= 1


def test_spectrum_pvs_are_named_as_the_dae_names_them():
    from liveview.array_pvs import ArrayPVs

    arrays = ArrayPVs("IN:X:LIVE:", RunHistogram(1, 16, TimeChannels(0, 1000, 4)), (4, 4))
    assert arrays.testChannel("IN:X:LIVE:SPEC:1:16:YC")
    assert arrays.testChannel("IN:X:LIVE:SPEC:8:1:YC")  # periods 1 to max_periods (8)
    for name in ("IN:X:LIVE:SPEC:1:17:YC", "IN:X:LIVE:SPEC:1:0:Y", "IN:X:LIVE:SPEC:9:1:X",
                 "IN:X:LIVE:SPEC:0:1:X",
                 "IN:X:LIVE:SPEC:1:1:Z", "IN:Y:LIVE:SPEC:1:1:X", "IN:X:LIVE:EVENTS"):
        assert not arrays.testChannel(name), name
    np.testing.assert_allclose(arrays.edges_us, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(arrays.centres_us, [0.125, 0.375, 0.625, 0.875])


def test_the_image_counts_a_tof_range():
    from liveview.array_pvs import ArrayPVs

    hist = RunHistogram(1, 16, TimeChannels(0, 1000, 4))
    hist.reset(Window(0, None))
    frame(hist, 1, 1, [1, 1, 2, 16], [100, 900, 300, 600])
    arrays = ArrayPVs("P:", hist, (4, 4), {"a": np.arange(1, 9).reshape(2, 4),
                                          "b": np.arange(9, 17).reshape(2, 4)})
    np.testing.assert_array_equal(arrays.image_counts().ravel(), [2, 1] + [0] * 13 + [1])
    banks = arrays.bank_counts(arrays.pixel_counts())
    assert banks["a"].tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]
    assert banks["b"].tolist() == [[0, 0, 0, 0], [0, 0, 0, 1]]
    arrays.tof_range_us = [0.25, 0.75]  # the middle two channels
    np.testing.assert_array_equal(arrays.image_counts().ravel(), [0, 1] + [0] * 13 + [1])


def test_load_is_shed_only_when_live_data_lags():
    from liveview.load_shedding import LoadShedder

    shed = LoadShedder(max_lag_s=10)
    assert all(shed.bin_next(lag) for lag in (3600, 600, 60))  # a run's history: all binned
    assert shed.bin_next(1.0) and shed.caught_up  # now reading live
    assert shed.bin_next(9.0)
    assert not shed.bin_next(11.0) and shed.shedding  # overloaded: count only
    assert not shed.bin_next(6.0)  # until the lag is under half the limit
    assert shed.bin_next(4.0) and not shed.shedding
    shed.restart()  # a new run: its history binned in full again
    assert shed.bin_next(600)
    with pytest.raises(ValueError):
        LoadShedder(max_lag_s=1)


def test_shed_events_are_counted_not_binned():
    hist = RunHistogram(1, 4, TimeChannels(0, 100, 10))
    hist.reset(Window(0, None))
    frame(hist, 1, 10, [1, 2], [5, 15])
    hist.add(2, np.array([20, 30]), np.array([0, 1]), np.array([5, 5, 5], np.int32),
             np.array([1, 1, 1], np.int32), bin_events=False)
    snap = hist.snapshot()
    assert (snap["events"], snap["frames"], snap["skipped"]) == (5, 3, 3)
    assert int(hist.counts.sum()) == 2 and snap["last_pulse_ns"] == 30


def test_max_periods_comes_from_the_liveview_table_and_is_checked():
    from datastream.instrument import InstrumentConfig
    from liveview.service import LiveSettings

    assert LiveSettings.from_config(InstrumentConfig(name="X")).max_periods == 8
    assert LiveSettings.from_config(
        InstrumentConfig(name="X", liveview={"max_periods": 2})).max_periods == 2
    for bad in (0, 1.5, "2"):
        with pytest.raises(ValueError, match="max_periods"):
            LiveSettings.from_config(InstrumentConfig(name="X", liveview={"max_periods": bad}))


def test_a_histogram_too_large_for_the_memory_allowed_is_refused_and_periods_fit_in_it():
    from datastream.instrument import InstrumentConfig
    from liveview.run_histogram import check_size
    from liveview.service import LiveSettings

    huge = TimeChannels(0, 100_000_000, 8000)
    with pytest.raises(ValueError, match="32,000 MB, over the 4,096 MB allowed"):
        RunHistogram(1, 1 << 20, huge)  # 1M pixels x 8000 channels: refused, not allocated
    with pytest.raises(ValueError, match="max_histogram_mb"):
        LiveSettings.from_config(InstrumentConfig(
            name="X", dae={"pixels": 1 << 20}, liveview={"channels": 8000}))
    assert check_size(1 << 20, TimeChannels(0, 100_000_000, 1000), 4096) == 4_194_304_000
    # 4 MB a period in 10 MB: two periods binned, however many are asked for
    hist = RunHistogram(1, 1000, TimeChannels(0, 1000, 1000), max_periods=8, max_mb=10)
    assert hist.max_periods == 2
    hist.reset(Window(0, None))
    assert hist.add(1, np.array([5]), np.array([0]), np.array([5], np.int32),
                    np.array([1], np.int32), period=2) == 1
    assert hist.periods == 1 and hist.snapshot()["outside"] == 1  # counted, not binned


def test_a_region_is_summed_in_chunks_to_the_same_spectrum():
    from liveview.run_histogram import ROI_CHUNK

    hist = RunHistogram(1, 3 * ROI_CHUNK, TimeChannels(0, 100, 5))
    hist.reset(Window(0, None))
    rng = np.random.default_rng(3)
    pixels = rng.integers(1, 3 * ROI_CHUNK + 1, 20_000, dtype=np.int32)
    tofs = rng.integers(0, 100, 20_000, dtype=np.int32)
    frame(hist, 1, 10, pixels, tofs)
    region = np.arange(2, 2 * ROI_CHUNK + 7)  # three chunks, the last short
    expected = hist.counts[0, region - 1].sum(axis=0)
    np.testing.assert_array_equal(hist.spectrum_of(region), expected)
    assert hist.spectrum_of(np.arange(1, 3 * ROI_CHUNK + 1)).sum() == 20_000
