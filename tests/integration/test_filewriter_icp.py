"""ISIS's stream (pu00 then ev44 chunks per frame, 3 periods, vetoed frames, a monitor) on a
real topic of the real broker, a run start carrying the TCB and detector-spectrum map, and
the file writer service: the file is what Mantid's ISIS loaders read, and its histograms,
framelog and totals are the stream's."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72

from datastream.kafka_client import make_producer
from tests.integration.conftest import file_written
from tests.unit.test_icp_file_mantid import check_mantid_file
from tests.unit.test_icp_file_modules import (
    DETECTORS,
    SPECTRA,
    TCB,
    expected_book,
    isis_stream,
    structure,
)

pytestmark = pytest.mark.integration
MS = 1_000_000


def test_an_isis_stream_on_the_broker_makes_an_icp_file(kafka, topics, writer):

    producer = make_producer(kafka)
    start_ms = time.time_ns() // MS - 5_000  # the frames lie in the recent past
    stream = isis_stream(start_ns=start_ms * MS)
    for payload, t in zip(stream.payloads, stream.times_ns, strict=True):
        producer.produce(topics.events, payload, timestamp=t // MS)
    assert producer.flush(10) == 0
    job_id = "6d1f4c7e-52a8-4b36-9a0e-3f1c2b7d9e01"
    producer.produce(topics.run_info, serialise_pl72(
        job_id, "ICP00000007.nxs", start_time=start_ms, stop_time=stream.stop_ns // MS,
        run_name="00000007", instrument_name=topics.instrument,
        nexus_structure=json.dumps(structure(topics.instrument, topics.events)),
        metadata=json.dumps({"title": "t", "rb_number": "1234", "tcb": TCB}),
        detector_spectrum_map=DetectorSpectrumMap(SPECTRA, DETECTORS, len(DETECTORS)),
        control_topic=topics.run_info))
    assert producer.flush(10) == 0
    done = file_written(kafka, topics.run_info, lambda w: w.job_id == job_id)
    assert not done.error_encountered, done.message
    path = writer / "ICP00000007.nxs"
    check_mantid_file(path)
    totals = expected_book(stream).totals
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        assert e["raw_frames"][0] == totals.raw_frames == 30
        assert e["good_frames"][0] == totals.good_frames
        assert e["periods/good_frames"][:].tolist() == totals.per_period("good_frames", 3)
        assert e["detector_1/counts"].shape == (3, 24, 50)
        # the histogram holds the good frames' events within the TCB and the map
        ev, good = e["detector_1_events"], e["framelog/vetos/value"][:] == 0
        index = [*ev["event_index"][:].tolist(), len(ev["event_id"])]
        binned = 0
        for i in np.flatnonzero(good):
            ids = ev["event_id"][index[i]:index[i + 1]]
            tof = ev["event_time_offset"][index[i]:index[i + 1]]
            binned += int(np.count_nonzero(np.isin(ids, DETECTORS)
                                           & (tof < TCB["tof_max_ns"])))
        assert e["detector_1/counts"][:].sum() == binned > 0
        assert e["monitor_1/data"][:].sum() == 5 * int(good.sum())
