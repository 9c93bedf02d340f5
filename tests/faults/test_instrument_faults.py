"""Faults in a whole running instrument (real broker, real EPICS IOCs, every service its own
process): a service killed mid-run, and what the run, its file and the PVs then show."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from confluent_kafka import TopicPartition
from streaming_data_types.eventdata_ev44 import deserialise_ev44

from datastream.kafka_client import make_consumer
from tests.conftest import wait_until
from tests.faults.conftest import check_events_file
from tests.system.conftest import instrument  # noqa: F401 (the whole instrument, a fixture)
from tests.system.genie import Genie

pytestmark = pytest.mark.faults


def events_in_kafka(kafka, topic: str, start_ns: int, stop_ns: int) -> int:
    """Events of pulses in [start, stop) on the events topic: what the DAE delivered from
    its detector (source DAE; the beam monitor's stream beside it is not counted)."""
    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    total = 0
    try:
        while (msg := consumer.poll(2.0)) is not None:
            if msg.error() or not msg.value() or msg.value()[4:8] != b"ev44":
                continue
            try:
                ev = deserialise_ev44(msg.value())
            except Exception:  # another test's hostile message on the shared topic
                continue
            if ev.source_name != "DAE":
                continue
            ref = np.asarray(ev.reference_time, np.int64)
            idx = np.append(ev.reference_time_index, len(ev.time_of_flight))
            keep = (ref >= start_ns) & (ref < stop_ns)
            total += int(np.diff(idx)[keep].sum())
    finally:
        consumer.close()
    return total


def run_file(inst, number: int):
    return inst.data_dir / f"SYS{number:08d}.nxs"


def start_time_ns(path) -> tuple[int, int]:
    import datetime as dt

    with h5py.File(path, "r") as f:
        start = dt.datetime.fromisoformat(f["raw_data_1/start_time"][()].decode())
        stop = dt.datetime.fromisoformat(f["raw_data_1/end_time"][()].decode())
    return int(start.timestamp() * 1000) * 1_000_000, int(stop.timestamp() * 1000) * 1_000_000


def check_run(inst, g: Genie, number: int) -> None:
    """The file holds exactly what the DAE delivered for the run, and TOTALCOUNTS says so."""
    path = run_file(inst, number)
    start_ns, stop_ns = start_time_ns(path)
    delivered = events_in_kafka(inst.kafka, "SYS_events", start_ns, stop_ns)
    assert g.get("DAE:TOTALCOUNTS") == delivered
    check_events_file(path, delivered)


def test_run_control_ioc_killed_mid_run_resumes_the_run(instrument):  # noqa: F811
    g = Genie(instrument.prefix)
    g.begin()
    number = g.get("DAE:IRUNNUMBER")
    time.sleep(1.5)
    instrument.services["run-control-ioc"].kill()
    time.sleep(1.0)
    instrument.services["run-control-ioc"].start()
    wait_until(lambda: g.get("DAE:IRUNNUMBER") is not None, 30, "the IOC back")
    assert g.text("DAE:RUNSTATE") == "RUNNING"
    assert g.get("DAE:IRUNNUMBER") == number
    assert "resumed after an IOC restart" in g.text("DAE:ERRMSGS")
    counted = g.get("DAE:TOTALCOUNTS")
    assert counted > 0  # counted back from the events topic
    wait_until(lambda: g.get("DAE:TOTALCOUNTS") > counted, 5, "counting to go on")
    g.end()
    assert g.text("FILEWRITER:LASTFILE") == f"SYS{number:08d}.nxs"
    check_run(instrument, g, number)
    g.begin()  # the next run is whole
    time.sleep(1.0)
    g.end()
    check_run(instrument, g, number + 1)


def test_file_writer_killed_mid_run_the_file_is_whole_and_the_gap_shows(instrument):  # noqa: F811
    g = Genie(instrument.prefix)
    g.begin()
    number = g.get("DAE:IRUNNUMBER")
    wait_until(lambda: g.text("FILEWRITER:STATE") == "WRITING", 15, "WRITING")
    time.sleep(1.0)
    writer = instrument.services["filewriter"]
    writer.kill()
    wait_until(lambda: g.text("FILEWRITER:STATE") in ("UNAVAILABLE", "UNOWNED"), 15,
               "the run shown as not written")
    writer.start()
    wait_until(lambda: g.text("FILEWRITER:STATE") == "WRITING", 60, "the job resumed")
    g.end()
    assert g.text("FILEWRITER:LASTFILE") == f"SYS{number:08d}.nxs"
    assert g.text("FILEWRITER:STATE") == "FINISHED"
    check_run(instrument, g, number)
