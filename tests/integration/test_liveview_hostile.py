"""The review's hostile inputs, each through its real entry point of the live view running
as the instrument runs it (in-process, its PVA and CA servers, the real broker): an ev44 of
100,000 times of flight and one pixel id on the events topic, `LIVE:TCB:TOF_MIN:SP = -inf`
over PVA (it segfaulted the live view), a pl72 whose TCB is -inf and whose detector-spectrum
map's arrays disagree, `{"cmd": "config", "start": Infinity}` on the command topic (it ended
the live view), and a caput to the read-only LIVE:EVENTS. The live view runs on through all
of it, refuses each with the reason, and then counts a run exactly."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import deliver, make_producer
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.integration.conftest import read_all, run_simulated_dae

pytestmark = pytest.mark.integration

MS = 1_000_000


def test_the_reviews_hostile_inputs_leave_the_count_exact(kafka, topics, tmp_path):
    import epics
    from p4p.client.thread import Context

    inst = topics.instrument
    config = InstrumentConfig(
        name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path, liveview={"channels": 10},
        dae={"pixels": 16, "events_per_frame": 40, "frame_rate_hz": 50, "seed": 3})
    p = f"TE:{inst}:"
    stop = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            run(config, kafka, EPICS_PORTS, stop)
        except BaseException as exc:
            failure.append(exc)

    view = threading.Thread(target=serve)
    view.start()
    ctx = Context("pva")

    def get(name: str):
        try:
            return ctx.get(p + "LIVE:" + name, timeout=2)
        except Exception:
            return None

    def alive() -> bool:
        names = {t.name for t in threading.enumerate()}
        return view.is_alive() and not failure and {"live-consumer", "live-jbi"} <= names

    producer = make_producer(kafka)
    try:
        wait_until(lambda: get("EVENTS") is not None, 30, "the live view's PVs")
        start_ms = time.time_ns() // MS
        job = str(uuid.uuid4())
        bad_tcb = {"tof_min_ns": float("-inf"), "tof_max_ns": 1e8, "channels": 10}
        # and a detector-spectrum map whose arrays disagree in length
        bad_map = DetectorSpectrumMap(np.array([1, 2, 3], np.int32), np.array([1, 1], np.int32),
                                      -1)
        deliver(producer, topics.run_info, serialise_pl72(
            job, f"{inst}.nxs", start_time=start_ms, run_name="00000001",
            nexus_structure="{}", metadata=json.dumps({"title": "t", "tcb": bad_tcb}),
            detector_spectrum_map=bad_map))
        wait_until(lambda: get("RUNNUMBER") == "00000001", 30, "the run to be followed")
        assert get("NUMTIMECHANNELS") == 10  # the -inf TCB was not taken
        assert get("NUMSPECTRA") == 16  # nor the map: one spectrum a pixel

        # the review's ev44, in the run: 100,000 times of flight and one pixel id
        deliver(producer, topics.events, serialise_ev44(
            "DAE", 1, np.array([start_ms * MS + 1]), np.array([0]),
            np.full(100_000, 500, np.int32), np.array([1], np.int32)))

        # -inf to the TCB over PVA: refused with the reason, no rebinning
        with pytest.raises(Exception, match="not a finite number"):
            ctx.put(p + "LIVE:TCB:TOF_MIN:SP", float("-inf"), timeout=5)
        with pytest.raises(Exception, match="outside 1 to 1e\\+06"):
            ctx.put(p + "LIVE:TCB:CHANNELS:SP", 1e12, timeout=5)

        # the command that ended the live view: answered ERR
        command = (b'{"cmd": "config", "msg_id": "inf", "start": Infinity, "data_topics": '
                   b'["' + topics.events.encode() + b'"], "histograms": [{"type": "hist1d",'
                   b' "tof_range": [0, 1], "num_bins": 1, "topic": "'
                   + topics.name("liveHistograms").encode() + b'"}]}')
        deliver(producer, topics.name("liveCommands"), command)

        def answer():
            for m in read_all(kafka, topics.name("liveResponses"), timeout=2):
                reply = json.loads(m.value())
                if reply.get("msg_id") == "inf":
                    return reply
            return None

        reply = wait_until(answer, 30, "the answer to the Infinity command")
        assert reply["response"] == "ERR" and "start must be a time" in reply["message"]

        # a caput to a counter: refused, the count unchanged
        events_pv = epics.PV(p + "LIVE:EVENTS", auto_monitor=False)
        assert events_pv.wait_for_connection(10) and not events_pv.write_access
        with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
            epics.caput(p + "LIVE:EVENTS", 12345, wait=True, timeout=5)
        assert events_pv.get(timeout=5, use_monitor=False) != 12345
        assert alive()

        # then the run itself: counted exactly, the hostile message not at all
        stop_ms, counters = run_simulated_dae(kafka, topics, config.dae, start_ms)
        deliver(producer, topics.run_info, serialise_6s4t(job, stop_time=stop_ms,
                                                          command_id=job))
        wait_until(lambda: get("EVENTS") == counters.total_counts, 30,
                   f"LIVE:EVENTS to reach {counters.total_counts}")
        time.sleep(1)
        assert get("EVENTS") == counters.total_counts
        assert epics.caget(p + "LIVE:EVENTS", timeout=5, use_monitor=False) \
            == counters.total_counts
        assert alive()
    finally:
        stop.set()
        view.join(30)
        ctx.close()
    assert not view.is_alive() and not failure
