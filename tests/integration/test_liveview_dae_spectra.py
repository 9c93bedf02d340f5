"""The live view serves the ISIS DAE's spectrum PVs over CA (DAE:SPEC:..., SPECINTEGRALS,
SPECDATA): a run through Kafka, binned with the TCB run control put in its pl72 and summed
into the spectra of its detector-spectrum map, and a beam monitor at the spectrum its
isis_histogram config gives it, read through EPICS base's libca (pyepics) as genie_python
reads them; a read once the stop has arrived shows all of the run's events."""

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
from datastream.schemas.pu00 import serialise_pu00
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.integration.conftest import run_simulated_dae

pytestmark = pytest.mark.integration

MS = 1_000_000
# pixels 1 + 2 in spectrum 1, pixels 3..15 spectra 2..14, pixel 16 in the dust-bin (left out,
# as run control leaves out the spectra table's spectrum 0)
GROUPING = {1: [1, 2], **{s: [s + 1] for s in range(2, 15)}}
# the run's one monitor, with no spectrum of its own: the file writer's default, the next
# after the detectors' highest (14)
MONITORS = {"children": [{"module": "isis_histogram", "config": {
    "source": "DAE", "monitors": [{"source": "monitor_1", "detector_id": 100001,
                                   "name": "monitor_hist_1"}]}}]}


def test_dae_spectra_over_ca_hold_the_whole_run(kafka, topics, tmp_path):
    import epics
    from p4p.client.thread import Context

    inst = topics.instrument
    config = InstrumentConfig(
        name=inst, prefix=f"TE:{inst}:", data_dir=tmp_path, liveview={"channels": 10},
        dae={"pixels": 16, "events_per_frame": 40, "frame_rate_hz": 50, "seed": 7})
    p = f"TE:{inst}:"

    def get(name: str, **kwargs):
        return epics.caget(p + name, timeout=5, use_monitor=False, **kwargs)

    stop = threading.Event()
    pva = Context("pva")
    view = threading.Thread(target=run, args=(config, kafka, EPICS_PORTS, stop))
    view.start()
    try:
        wait_until(lambda: get("DAE:NUMSPECTRA") == 16, 30, "the live view's CA PVs")
        assert get("DAE:NUMTIMECHANNELS") == 10
        start_ms = time.time_ns() // MS
        job = str(uuid.uuid4())
        producer = make_producer(kafka)
        tcb = {"tof_min_ns": 0.0, "tof_max_ns": 20_000_000.0, "channels": 25,
               "logarithmic": False}
        spectra, detectors = np.array([(s, d) for s, ds in GROUPING.items() for d in ds],
                                      np.int32).T
        deliver(producer, topics.run_info, serialise_pl72(
            job, f"{inst}.nxs", start_time=start_ms, run_name="00000001",
            nexus_structure=json.dumps(MONITORS),
            metadata=json.dumps({"title": "t", "tcb": tcb}),
            detector_spectrum_map=DetectorSpectrumMap(spectra, detectors, 14)))
        # the run's TCB and spectra, from its pl72: the live view bins and sums with them
        wait_until(lambda: get("DAE:NUMTIMECHANNELS") == 25, 30, "the run's 25 channels")
        assert get("DAE:NUMSPECTRA") == 15  # the monitor's spectrum too, as NSP1
        assert get("DAE:SPEC:1:3:XE.NORD") == 26
        assert get("DAE:SPEC:1:3:XE")[-1] == pytest.approx(20_000.0)  # µs
        # the monitor's events: two frames' (no pu00 of theirs: good, period 1), one
        # vetoed frame's (its pu00 vetoed: not data), and one before the run; one key, so
        # one partition: the vetoed frame's pu00 is read before its events, as a DAE's are
        key = b"monitor frames"
        rng = np.random.default_rng(5)
        monitor_tof = rng.integers(0, 21_000_000, 300).astype(np.int32)
        monitor_tof[monitor_tof % 800_000 == 0] += 1  # none on an edge: float rounding
        frames = [start_ms * MS + 300_000, start_ms * MS + 700_000]
        deliver(producer, topics.events, serialise_pu00("DAE", 1, frames[0] + 50_000, 1, 0,
                                                        0.0), key)
        for i, (ref, events) in enumerate([(frames[0], monitor_tof[:100]),
                                           (frames[1], monitor_tof[100:]),
                                           (frames[0] + 50_000, monitor_tof),
                                           (start_ms * MS - 10**8, monitor_tof)]):
            deliver(producer, topics.events, serialise_ev44(
                "monitor_1", 7 + i, np.array([ref]), np.array([0], np.int32), events,
                np.full(len(events), 100001, np.int32)), key)
        stop_ms, counters = run_simulated_dae(kafka, topics, config.dae, start_ms)
        deliver(producer, topics.run_info, serialise_6s4t(job, stop_time=stop_ms,
                                                          command_id=job))
        # once the live view has the stop, a read waits for the rest of the run's events
        wait_until(lambda: get("LIVE:STOP_TIME", as_string=True), 30, "the run's stop")
        integrals = get("DAE:SPECINTEGRALS")
        assert get("DAE:SPECINTEGRALS.NORD") == len(integrals) == 16  # spectra 0..15
        # each pixel's counts, from the detector image (per pixel whatever the map)
        image = lambda: np.asarray(pva.get(p + "LIVE:IMAGE", timeout=5)).ravel()  # noqa: E731
        wait_until(lambda: image().sum() == counters.total_counts, 10,
                   "the image to hold the whole run")
        pixels = image()[:16]
        # the monitor's events histogrammed, in the run's channels (those past 20 ms out)
        monitor, _ = np.histogram(monitor_tof, bins=25, range=(0, 20_000_000))
        assert integrals.tolist() == [0, pixels[0] + pixels[1], *pixels[2:15], monitor.sum()]
        # the dust-bin's are in no spectrum, the monitor's in its own
        assert integrals[:15].sum() == counters.total_counts - pixels[15]
        assert epics.caput(p + "DAE:SPECDATA.PROC", 1, wait=True, timeout=10) == 1
        data = get("DAE:SPECDATA")
        assert get("DAE:SPECDATA.NORD") == len(data) == 16 * 26
        cube = data.reshape(16, 26)
        assert not cube[:, 0].any() and not cube[0].any()
        assert cube.sum(axis=1).tolist() == integrals.tolist()
        assert cube[15, 1:].tolist() == monitor.tolist()
        for spectrum in (1, 9, 14, 15):
            yc = get(f"DAE:SPEC:1:{spectrum}:YC")[:25]  # NORD; served whole, 0 past it
            assert np.asarray(yc).tolist() == cube[spectrum, 1:].tolist()
            assert np.asarray(get(f"DAE:SPEC:0:{spectrum}:YC"))[:25].tolist() == yc.tolist()
            y = get(f"DAE:SPEC:1:{spectrum}:Y")[:25]
            assert y == pytest.approx(yc / 800.0)  # counts per µs of 800 µs channels
    finally:
        pva.close()
        stop.set()
        view.join(30)
    assert not view.is_alive()
