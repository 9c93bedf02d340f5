"""ISIS periods on real parts: the simulated DAE sends ev42 frames with is84 period numbers
(hardware periods, frame by frame) to the real broker; the live view, running as it runs in
the instrument, bins each period apart. What its PVs show over PVA (NUMPERIODS, EVENTS_PD,
GOODFRAMES_PD, SPEC:<period>:<spectrum>:YC) equals what the events topic holds."""

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
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.integration.conftest import read_all, run_simulated_dae

pytestmark = pytest.mark.integration

MS = 1_000_000


def test_each_period_is_binned_apart(kafka, topics, tmp_path):
    inst = topics.instrument
    config = InstrumentConfig(
        name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path, liveview={"channels": 10},
        dae={"pixels": 16, "events_per_frame": 40, "frame_rate_hz": 50, "seed": 5,
             "event_schema": "ev42", "periods": 3})
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
        events, frames, per_pixel = Counter(), Counter(), Counter()
        for message in read_all(kafka, topics.events):
            ev = read_events(message.value())
            if ev.source_name == "DAE" and start_ms * MS <= ev.reference_time[0] < stop_ms * MS:
                events[ev.period] += len(ev.pixel_id)
                frames[ev.period] += 1
                per_pixel.update((ev.period, int(p)) for p in ev.pixel_id)
        assert sum(events.values()) == counters.total_counts and set(events) == {0, 1, 2}
        wait_until(lambda: get("EVENTS") == counters.total_counts, 30,
                   f"LIVE:EVENTS to reach {counters.total_counts}")
        assert get("NUMPERIODS") == 3
        assert list(get("EVENTS_PD")) == [events[p] for p in range(3)]
        assert list(get("GOODFRAMES_PD")) == [frames[p] for p in range(3)]
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
