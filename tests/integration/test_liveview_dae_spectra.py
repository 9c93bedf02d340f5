"""The live view serves the ISIS DAE's spectrum PVs over CA (DAE:SPEC:..., SPECINTEGRALS,
SPECDATA): a run through Kafka, binned with the TCB run control put in its pl72 and summed
into the spectra of its detector-spectrum map, read through EPICS base's libca (pyepics) as
genie_python reads them; a read once the stop has arrived shows all of the run's events."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import deliver, make_producer
from liveview.service import run
from tests.conftest import EPICS_PORTS, wait_until
from tests.integration.conftest import run_simulated_dae

pytestmark = pytest.mark.integration

MS = 1_000_000
# pixels 1 + 2 in spectrum 1, pixels 3..15 spectra 2..14, pixel 16 in the dust-bin (left out,
# as run control leaves out the spectra table's spectrum 0)
GROUPING = {1: [1, 2], **{s: [s + 1] for s in range(2, 15)}}


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
            nexus_structure="{}", metadata=json.dumps({"title": "t", "tcb": tcb}),
            detector_spectrum_map=DetectorSpectrumMap(spectra, detectors, 14)))
        # the run's TCB and spectra, from its pl72: the live view bins and sums with them
        wait_until(lambda: get("DAE:NUMTIMECHANNELS") == 25, 30, "the run's 25 channels")
        assert get("DAE:NUMSPECTRA") == 14
        assert get("DAE:SPEC:1:3:XE.NORD") == 26
        assert get("DAE:SPEC:1:3:XE")[-1] == pytest.approx(20_000.0)  # µs
        stop_ms, counters = run_simulated_dae(kafka, topics, config.dae, start_ms)
        deliver(producer, topics.run_info, serialise_6s4t(job, stop_time=stop_ms,
                                                          command_id=job))
        # once the live view has the stop, a read waits for the rest of the run's events
        wait_until(lambda: get("LIVE:STOP_TIME", as_string=True), 30, "the run's stop")
        integrals = get("DAE:SPECINTEGRALS")
        assert get("DAE:SPECINTEGRALS.NORD") == len(integrals) == 15  # spectra 0..14
        # each pixel's counts, from the detector image (per pixel whatever the map)
        image = lambda: np.asarray(pva.get(p + "LIVE:IMAGE", timeout=5)).ravel()  # noqa: E731
        wait_until(lambda: image().sum() == counters.total_counts, 10,
                   "the image to hold the whole run")
        pixels = image()[:16]
        assert integrals.tolist() == [0, pixels[0] + pixels[1], *pixels[2:15]]
        assert integrals.sum() == counters.total_counts - pixels[15]  # the dust-bin's
        assert epics.caput(p + "DAE:SPECDATA.PROC", 1, wait=True, timeout=10) == 1
        data = get("DAE:SPECDATA")
        assert get("DAE:SPECDATA.NORD") == len(data) == 15 * 26
        cube = data.reshape(15, 26)
        assert not cube[:, 0].any() and not cube[0].any()
        assert cube.sum(axis=1).tolist() == integrals.tolist()
        for spectrum in (1, 9, 14):
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
