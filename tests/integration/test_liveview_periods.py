"""ISIS periods on real parts: the simulated DAE sends frames with their period numbers
(hardware periods, frame by frame) to the real broker, as ISIS streams today (a pu00 a frame,
with its proton charge and vetoes, then its ev44 in chunks) or in the older ev42/is84 form; the
live view, running as it runs in the instrument, bins each period apart. What its PVs show
over PVA (NUMPERIODS, EVENTS_PD, GOODFRAMES_PD, RAWFRAMES_PD, GOODUAH, SPEC:<period>:
<spectrum>:YC) equals what the events topic holds and what the DAE counted."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from p4p.client.thread import Context
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.event_messages import read_events
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import deliver, make_producer
from datastream.schemas import schema_id
from datastream.schemas.pu00 import deserialise_pu00
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.integration.conftest import read_all, run_simulated_dae

pytestmark = pytest.mark.integration

MS = 1_000_000


class TopicCount:
    """What the events topic holds of a run, period by period, read here without the
    readers' code: frames from pu00 (good when not vetoed), or one per ev42."""

    def __init__(self, start_ns: int, stop_ns: int) -> None:
        self.window = (start_ns, stop_ns)
        self.events, self.good, self.raw = Counter(), Counter(), Counter()
        self.per_pixel: Counter = Counter()
        self.good_uah = 0.0
        self.frames: dict[int, tuple[int, int]] = {}  # pu00 time -> (period, vetos)

    def add(self, payload: bytes) -> None:
        start, stop = self.window
        if schema_id(payload) == "pu00":
            pulse = deserialise_pu00(payload)
            if start <= pulse.reference_time < stop:
                self.frames[pulse.reference_time] = (pulse.period_number, pulse.vetos)
                self.raw[pulse.period_number] += 1
                if not pulse.vetos:
                    self.good[pulse.period_number] += 1
                    self.good_uah += pulse.proton_charge
            return
        ev = read_events(payload)
        t = int(ev.reference_time[0])
        if ev.source_name != "DAE" or not start <= t < stop:
            return
        period, vetos = self.frames.get(t, (ev.period, 0))
        assert not vetos  # the DAE sends no events of a vetoed frame
        if t not in self.frames:  # ev42: a frame a message
            self.good[period] += 1
            self.raw[period] += 1
        self.events[period] += len(ev.pixel_id)
        self.per_pixel.update((period, int(p)) for p in ev.pixel_id)


@pytest.mark.parametrize("stream", ["pu00+ev44", "ev42"])
def test_each_period_is_binned_apart(kafka, topics, tmp_path, stream):
    inst = topics.instrument
    dae = {"pixels": 16, "events_per_frame": 40, "frame_rate_hz": 50, "seed": 5, "periods": 3}
    if stream == "ev42":
        dae["event_schema"] = "ev42"
    else:  # chunks of 16 events, a veto now and then, the beam's jitter
        dae |= {"max_events_per_message": 16, "vetoes": {"smp": 0.15},
                "beam_jitter": 0.05}
    config = InstrumentConfig(
        name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path, liveview={"channels": 10},
        dae=dae)
    live = f"TE:{inst}:LIVE:"
    stop = threading.Event()
    view = threading.Thread(target=run, args=(config, kafka, EPICS_PORTS, stop))
    view.start()
    ctx = Context("pva")

    def get(name: str):
        try:
            return ctx.get(live + name, timeout=2)
        except Exception:  # not served yet
            return None

    try:
        wait_until(lambda: get("EVENTS") is not None, 30, "the live view's PVs")
        start_ms = time.time_ns() // MS
        job = str(uuid.uuid4())
        producer = make_producer(kafka)
        deliver(producer, topics.run_info, serialise_pl72(
            job, f"{inst}.nxs", start_time=start_ms, run_name="00000001",
            nexus_structure="{}"))
        stop_ms, counters = run_simulated_dae(kafka, topics, config.dae, start_ms)
        deliver(producer, topics.run_info, serialise_6s4t(job, stop_time=stop_ms,
                                                          command_id=job))
        # what the topic holds of the run, period by period
        topic = TopicCount(start_ms * MS, stop_ms * MS)
        for message in read_all(kafka, topics.events):
            topic.add(message.value())
        events, per_pixel = topic.events, topic.per_pixel
        assert sum(events.values()) == counters.total_counts and set(events) == {0, 1, 2}
        assert sum(topic.good.values()) == counters.good_frames
        assert sum(topic.raw.values()) == counters.raw_frames
        if stream != "ev42":
            assert counters.raw_frames > counters.good_frames  # some frames were vetoed
            assert topic.good_uah == pytest.approx(counters.good_uah, rel=1e-9)
        wait_until(lambda: get("EVENTS") == counters.total_counts, 30,
                   f"LIVE:EVENTS to reach {counters.total_counts}")
        assert get("NUMPERIODS") == 3
        assert list(get("EVENTS_PD")) == [events[p] for p in range(3)]
        assert list(get("GOODFRAMES_PD")) == [topic.good[p] for p in range(3)]
        assert list(get("RAWFRAMES_PD")) == [topic.raw[p] for p in range(3)]
        assert list(get("GOODFRAMES_PD")) == list(counters.period_good_frames)
        assert list(get("RAWFRAMES_PD")) == list(counters.period_raw_frames)
        assert (get("GOODFRAMES"), get("RAWFRAMES")) == (counters.good_frames,
                                                         counters.raw_frames)
        assert get("GOODUAH") == pytest.approx(counters.good_uah, abs=1e-6)
        assert list(get("GOODUAH_PD")) == pytest.approx(counters.period_good_uah, abs=1e-6)
        for period in range(3):
            for pixel in (1, 9, 16):
                spectrum = np.asarray(get(f"SPEC:{period + 1}:{pixel}:YC"))
                assert spectrum.sum() == per_pixel[(period, pixel)], (period, pixel)
        assert np.asarray(get("SPEC:4:1:YC")).sum() == 0  # a period not counted into
    finally:
        stop.set()
        view.join(30)
        ctx.close()
    assert not view.is_alive()
