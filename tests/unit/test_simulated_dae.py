import contextlib
import time
from collections.abc import Iterator

import numpy as np
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.schemas import schema_id
from datastream.schemas.pu00 import deserialise_pu00
from ioc.simulated_dae import DaeSettings, EventGenerator, SimulatedDae
from tests.fakes import FakeProducer


def test_frames_lie_on_the_grid_inside_the_run():
    producer = FakeProducer()
    dae = SimulatedDae(producer, "X_events", DaeSettings(frame_rate_hz=50, events_per_frame=20,
                                                         seed=1))
    dae.start()
    try:
        start = time.time_ns() - 100_000_000  # started 100 ms ago: the DAE catches up
        dae.begin(start)
        time.sleep(0.3)
        stop = time.time_ns()
        counters = dae.end(stop)
    finally:
        dae.close()
    events = [s for s in producer.sent if schema_id(s.value) == "ev44"]
    frames = [deserialise_ev44(s.value) for s in events]
    times = np.array([f.reference_time[0] for f in frames])
    assert len(frames) == counters.good_frames >= 15
    assert np.all((times >= start) & (times < stop))
    assert np.all(np.diff(times) == 20_000_000)
    assert counters.total_counts == sum(len(f.pixel_id) for f in frames) == 20 * len(frames)
    assert [s.timestamp for s in events] == [t // 1_000_000 for t in times]
    pulses = [deserialise_pu00(s.value) for s in producer.sent if schema_id(s.value) == "pu00"]
    assert [p.reference_time for p in pulses] == times.tolist()  # one pu00 a frame


@contextlib.contextmanager
def _running(producer: FakeProducer) -> Iterator[SimulatedDae]:
    """A DAE of 100 frames a second, 5 events each, its frame thread running."""
    dae = SimulatedDae(producer, "X_events", DaeSettings(frame_rate_hz=100, events_per_frame=5))
    dae.start()
    try:
        yield dae
    finally:
        dae.close()


def test_pause_is_the_software_veto():
    with _running(FakeProducer()) as dae:
        dae.begin(time.time_ns())
        time.sleep(0.1)
        dae.pause(time.time_ns())
        paused_at = dae.counters().good_frames
        raw_at = dae.counters().raw_frames
        time.sleep(0.2)
        assert dae.counters().good_frames == paused_at
        assert dae.counters().raw_frames > raw_at  # frames go on, vetoed
        assert dict(dae.counters().vetoed_frames)["pause"] > 0
        dae.resume(time.time_ns())
        time.sleep(0.1)
        assert dae.end(time.time_ns()).good_frames > paused_at


def test_events_are_plausible():
    settings = DaeSettings(events_per_frame=1000, pixels=100, first_pixel=5, seed=3)
    tof, pixel = EventGenerator(settings).frame()
    assert len(tof) == len(pixel) == 1000
    assert pixel.min() >= 5 and pixel.max() < 105
    assert tof.min() >= 0 and tof.max() < settings.frame_period_ns
    assert 1_000_000 < np.median(tof) < 50_000_000  # milliseconds, as thermal neutrons over 10 m


def test_a_frame_that_cannot_be_sent_is_not_counted_and_the_frames_go_on(caplog):
    class Refusing(FakeProducer):
        refuse = 3

        def produce(self, *args, **kwargs):
            if self.refuse:  # librdkafka refuses (a message too large, a broken topic)
                self.refuse -= 1
                raise RuntimeError("refused")
            super().produce(*args, **kwargs)

    producer = Refusing()
    with _running(producer) as dae:
        dae.begin(time.time_ns())
        time.sleep(0.2)
        counters = dae.end(time.time_ns())
    frames = [deserialise_pu00(s.value) for s in producer.sent if schema_id(s.value) == "pu00"]
    assert counters.delivery_errors == 3
    assert counters.raw_frames == len(frames) >= 10  # the frames after the failures came
    assert "not sent" in caplog.text
