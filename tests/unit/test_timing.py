import numpy as np

from filewriter.timing import LogGate, Window, pulses_in_window


def test_window_is_half_open():
    w = Window(100, 200)
    assert w.contains(100) and w.contains(199)
    assert not w.contains(99) and not w.contains(200)
    assert Window(100, None).contains(10**18)


def test_pulses_in_window():
    mask = pulses_in_window(np.array([90, 100, 150, 199, 200]), Window(100, 200))
    assert mask.tolist() == [False, True, True, True, False]


def test_log_gate_keeps_the_start_value_and_dedupes():
    gate, w = LogGate(), Window(100, 200)
    assert gate.offer(50, "a", w) == []
    assert gate.offer(80, "b", w) == []  # only the last one before start is kept
    assert gate.offer(120, "c", w) == ["b", "c"]
    assert gate.offer(120, "c-again", w) == []  # same timestamp: written once
    assert gate.offer(250, "late", w) == []
    assert gate.flush_pending() == []


def test_log_gate_without_updates_in_the_run_gives_the_start_value_at_close():
    gate, w = LogGate(), Window(100, 200)
    gate.offer(10, "old", w)
    assert gate.flush_pending() == ["old"]
