"""Run control's recount after a restart follows the writer's rules: a message sent again
counts once, and only the run's pulses count."""

import numpy as np
from streaming_data_types.eventdata_ev44 import serialise_ev44

from datastream.run_window import Window
from ioc.event_count import _RunCounter


def ev44(message_id: int, pulses: list[int], per_pulse: int, source: str = "DAE") -> bytes:
    n = per_pulse * len(pulses)
    return serialise_ev44(source, message_id, np.array(pulses, np.int64),
                          np.arange(0, n, per_pulse, dtype=np.int32),
                          np.ones(n, np.int32), np.ones(n, np.int32))


def test_a_message_sent_again_counts_once() -> None:
    counter = _RunCounter("DAE", Window(1000, None))
    message = ev44(7, [2000], 5)
    assert counter.count(message) == (5, 1)
    assert counter.count(message) == (0, 0)  # a producer's retry: in the file once
    assert counter.count(ev44(8, [3000], 5)) == (5, 1)


def test_only_the_run_s_pulses_count() -> None:
    counter = _RunCounter("DAE", Window(1000, 3000))
    assert counter.count(ev44(1, [500, 1000, 2999, 3000], 2)) == (4, 2)
    assert counter.count(ev44(2, [2000], 3, source="monitor")) == (0, 0)
