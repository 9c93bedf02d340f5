"""Run and SE logs (f144 / f142 with their un00 units) on real topics of the real broker,
beside ISIS's event stream, and the file writer service with the ISIS template: the file's
runlog and selog are what Mantid's LoadNexusLogs loads (IXrunlog, IXselog / IXseblock /
value_log, seconds after `start`, units from un00), and a un00 of no log or a broken one
costs nothing else."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap, serialise_pl72

from datastream.kafka_client import make_producer
from datastream.schemas.un00 import serialise_un00
from tests.integration.conftest import file_written
from tests.unit.test_icp_file_mantid import check_mantid_file
from tests.unit.test_icp_file_modules import DETECTORS, SPECTRA, TCB, isis_stream
from tests.unit.test_ix_logs import absolute_ns, hostile_un00, log_messages, structure

pytestmark = pytest.mark.integration
MS = 1_000_000
S = 1_000_000_000


def test_logs_and_their_units_on_the_broker_make_mantid_s_logs(kafka, topics, writer):

    producer = make_producer(kafka)
    start_ms = time.time_ns() // MS - 5_000  # the run lies in the recent past
    start_ns = start_ms * MS
    stream = isis_stream(start_ns=start_ns)
    for payload, t in zip(stream.payloads, stream.times_ns, strict=True):
        producer.produce(topics.events, payload, timestamp=t // MS)
    hostile = hostile_un00(start_ns)
    logs = [*log_messages(start_ns, topics.sample_env, topics.run_log),
            (topics.sample_env, serialise_un00("TE:TST:NOBODY", start_ns, "Pa")),
            *((topics.sample_env, h) for h in hostile)]
    for topic, payload in logs:
        # stamped inside the run: a message stamped past the stop ends its partition for
        # the writer
        producer.produce(topic, payload, timestamp=start_ms + 1)
    assert producer.flush(10) == 0
    job_id = "0b8e3c52-7d4f-4e1a-9c2b-6a5f1d3e8c20"
    producer.produce(topics.run_info, serialise_pl72(
        job_id, "IXL00000007.nxs", start_time=start_ms, stop_time=stream.stop_ns // MS,
        run_name="00000007", instrument_name=topics.instrument,
        nexus_structure=json.dumps(structure(None, topics.instrument, topics.events,
                                             topics.sample_env, topics.run_log)),
        metadata=json.dumps({"title": "t", "rb_number": "1234", "tcb": TCB}),
        detector_spectrum_map=DetectorSpectrumMap(SPECTRA, DETECTORS, len(DETECTORS)),
        control_topic=topics.run_info))
    assert producer.flush(10) == 0
    done = file_written(kafka, topics.run_info, lambda w: w.job_id == job_id)
    assert not done.error_encountered, done.message
    assert f"{len(hostile)} malformed" in done.message, done.message
    path = writer / "IXL00000007.nxs"
    check_mantid_file(path)  # runlog and selog as LoadNexusLogs loads them, and the rest
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        temp = e["selog/Temperature/value_log"]
        assert temp["value"][:].tolist() == [20.5, 21.0, 294.5]
        assert absolute_ns(temp["time"]) == [start_ns - S, start_ns + S // 2, start_ns + S]
        assert temp["value"].attrs["units"] == "K"  # changed mid-run: the last
        assert e["selog/Status/value_log/value"][:].tolist() == [b"idle", b"busy"]
        frames = e["runlog/goodframes"]
        assert frames["value"][:].tolist() == [0, 12] and frames["time"][:].tolist() == [0, 1]
        assert frames["time"].attrs["units"] == "second"
        assert np.all(e["runlog/runstate/value"][:] == 1)
