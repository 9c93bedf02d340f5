"""Run control's recount after a restart follows the writer's rules: a message sent again
counts once, only the run's pulses count, and frames come from pu00 when the DAE sends it
(good and raw frames, their charge and periods, as datastream.frames counts them)."""

import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.run_window import Window
from datastream.schemas.pu00 import serialise_pu00
from ioc.event_count import RunCounter


def ev44(message_id: int, pulses: list[int], per_pulse: int, source: str = "DAE") -> bytes:
    n = per_pulse * len(pulses)
    return serialise_ev44(source, message_id, np.array(pulses, np.int64),
                          np.arange(0, n, per_pulse, dtype=np.int32),
                          np.ones(n, np.int32), np.ones(n, np.int32))


def counted(counter: RunCounter, message: bytes) -> tuple[int, int]:
    frames = counter.book.totals.good_frames
    return counter.count(message), counter.book.totals.good_frames - frames


def test_a_message_sent_again_counts_once() -> None:
    counter = RunCounter("DAE", Window(1000, None))
    message = ev44(7, [2000], 5)
    assert counted(counter, message) == (5, 1)
    assert counted(counter, message) == (0, 0)  # a producer's retry: in the file once
    assert counted(counter, ev44(8, [3000], 5)) == (5, 1)


def test_only_the_run_s_pulses_count() -> None:
    counter = RunCounter("DAE", Window(1000, 3000))
    assert counted(counter, ev44(1, [500, 1000, 2999, 3000], 2)) == (4, 2)
    assert counted(counter, ev44(2, [2000], 3, source="monitor")) == (0, 0)


def test_an_ev44_only_frame_in_chunks_is_one_frame() -> None:
    counter = RunCounter("DAE", Window(1000, None))
    assert counted(counter, ev44(1, [2000], 4)) == (4, 1)
    assert counted(counter, ev44(2, [2000], 4)) == (4, 0)


def test_frames_periods_charge_and_vetoes_come_from_pu00() -> None:
    counter = RunCounter("DAE", Window(1000, None), monitors=frozenset({"monitor_1"}))
    frames = [(2000, 0, 0.5, 0), (3000, 1, 0.25, 0), (4000, 2, 0.125, 1 << 8),
              (5000, 0, 0.0625, 0), (500, 0, 9.0, 0)]  # the last before the run
    message_id = 0
    for t, period, charge, vetos in frames:
        message_id += 1
        counter.count(serialise_pu00("DAE", message_id, t, vetos, period, charge))
        message_id += 1
        # a frame in two ev44 chunks, as kafka_event_aggregator sends more than 100k events
        counter.count(ev44(message_id, [t], 3))
        message_id += 1
        counter.count(ev44(message_id, [t], 2))
        message_id += 1
        counter.count(ev44(message_id, [t], 1, source="monitor_1"))
    counter.count(serialise_pu00("DAE", 1, 2000, 0, 0, 0.5))  # sent again: once
    c = counter.counters(periods=3)
    assert (c.good_frames, c.raw_frames) == (3, 4)
    assert c.total_counts == 15  # the vetoed frame's events are not data
    assert c.monitor_counts == 3
    assert c.good_uah == pytest.approx(0.8125) and c.raw_uah == pytest.approx(0.9375)
    assert c.period_good_frames == (2, 1, 0) and c.period_raw_frames == (2, 1, 1)
    assert c.period_good_uah == pytest.approx((0.5625, 0.25, 0.0))
