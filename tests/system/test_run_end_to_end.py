"""A real run, end to end: BEGINRUN/ENDRUN over PVs -> Kafka -> a NeXus file holding every
event, on real parts only."""

from __future__ import annotations

import datetime as dt
import json
import time

import h5py
import numpy as np
import pytest
import scippnexus as snx
from caproto import ChannelType
from caproto.sync.client import read as ca_read
from caproto.sync.client import write as ca_write
from confluent_kafka import TopicPartition

from datastream.kafka_client import make_consumer
from datastream.schemas import schema_id
from datastream.streams import RUNLOG_PVS
from forwarder.update import EPICS_EPOCH_OFFSET_S
from tests.conftest import http_get, wait_until
from tests.system.genie import Genie

pytestmark = pytest.mark.system


def count_messages(kafka, topic: str, sid: str) -> int:
    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition(topic, 0, 0)])
    n = 0
    try:
        while (msg := consumer.poll(1.0)) is not None:
            if not msg.error() and msg.value() and schema_id(msg.value()) == sid:
                n += 1
    finally:
        consumer.close()
    return n


def epics_ns(stamp) -> int:
    return (stamp.secondsSinceEpoch + EPICS_EPOCH_OFFSET_S) * 1_000_000_000 + stamp.nanoSeconds


def do_run(instrument, title: str, change_temperature_to: float, field_value: float) -> dict:
    g = Genie(instrument.prefix)
    g.change_title(title)
    g.put("DAE:_USERNAME:SP", "Ada Lovelace, Bob")
    g.begin()
    run_number = g.get("DAE:IRUNNUMBER")
    assert g.get("DAE:RUNNUMBER") == f"{run_number:08d}"
    wait_until(lambda: g.text("FILEWRITER:STATE") == "WRITING", 15, "the writer to write")
    time.sleep(1.0)
    g.put("SE:TEMP:SP", change_temperature_to)
    time.sleep(1.5)
    g.put("SE:FIELD", field_value)
    field = ca_read(instrument.pv("SE:FIELD"), data_type="time")
    assert g.get("DAE:TOTALCOUNTS") > 0
    g.end()
    wait_until(lambda: g.text("FILEWRITER:LASTFILE") == f"SYS{run_number:08d}.nxs", 10,
               "LASTFILE to name the file")
    return {"run_number": run_number, "total": g.get("DAE:TOTALCOUNTS"),
            "frames": g.get("DAE:GOODFRAMES"), "field_ns": epics_ns(field.metadata.stamp),
            "path": instrument.data_dir / f"SYS{run_number:08d}.nxs", "field": field_value}


def field_messages(kafka, pv: str) -> list[tuple[int, object, int]]:
    """(Kafka timestamp, value, EPICS timestamp) of a PV's f142 messages: for failure reports."""
    from datastream.schemas.f142 import deserialise_f142

    consumer = make_consumer(kafka)
    consumer.assign([TopicPartition("SYS_sampleEnv", 0, 0)])
    out = []
    try:
        while (msg := consumer.poll(1.0)) is not None:
            if msg.key() == pv.encode() and schema_id(msg.value()) == "f142":
                d = deserialise_f142(msg.value())
                out.append((msg.timestamp()[1], d.value, d.timestamp_ns))
    finally:
        consumer.close()
    return out


def check_file(run: dict, title: str, kafka=None) -> None:
    with h5py.File(run["path"], "r") as f:
        entry = f["raw_data_1"]
        assert entry.attrs["NX_class"] == "NXentry"
        events = entry["detector_1_events"]
        assert events.attrs["NX_class"] == "NXevent_data"
        assert len(events["event_id"]) == run["total"]  # every event, once
        tz = events["event_time_zero"][:]
        assert len(tz) == run["frames"] and np.all(np.diff(tz.astype(np.int64)) > 0)
        assert events["event_time_zero"].dtype == np.uint64
        assert events["event_time_zero"].attrs["offset"] == "1970-01-01T00:00:00Z"
        assert events["event_index"][-1] < run["total"]
        assert entry["title"][()].decode() == title
        assert int(entry["run_number"][()]) == run["run_number"]
        assert entry["user_1/name"][()].decode() == "Ada Lovelace"
        assert entry["start_time"][()] and entry["end_time"][()]
        assert entry["selog"].attrs["NX_class"] == "IXselog"
        assert entry["selog/Field"].attrs["NX_class"] == "IXseblock"
        field = entry["selog/Field/value_log"]
        assert field.attrs["NX_class"] == "NXlog"
        values = field["value"][:].tolist()
        assert run["field"] in values, (
            values, field["time"][:], kafka and field_messages(kafka, "TE:SYS:SE:FIELD"))
        t_field = field["time"][:][values.index(run["field"])]
        start = dt.datetime.fromisoformat(field["time"].attrs["start"])
        start_ns = int(start.timestamp()) * 1_000_000_000 + start.microsecond * 1000
        # the EPICS timestamp, to the nanosecond: `start` plus the seconds after it
        assert start_ns + round(t_field * 1e9) == run["field_ns"], (
            field["value"][:], field["time"][:], run["field_ns"],
            kafka and field_messages(kafka, "TE:SYS:SE:FIELD"))
        assert len(entry["selog/Temperature/value_log/value"]) >= 1
        spectrum = entry["selog/Spectrum/value_log/value"]
        assert spectrum.shape[1:] == (8,) and spectrum[0].tolist()[:3] == [3.0, 7.0, 12.0]
        assert entry["selog/Status/value_log/value"][0] in (b"idle", "idle")
        # the DAE counters through the forwarder's run log; the last is the final count
        assert entry["runlog"].attrs["NX_class"] == "IXrunlog"
        assert entry["runlog/goodframes"].attrs["NX_class"] == "NXlog"
        assert len(entry["runlog/goodframes/value"]) >= 1
        assert len(entry["runlog/totalcounts/value"]) >= 1
    with snx.File(run["path"]) as f:
        loaded = f["raw_data_1"]["detector_1_events"][...]
        assert loaded.bins.size().sum().value == run["total"]
        # an NXlog with connection_status_* / alarm_* loads as a group of sub-logs
        temp_group = f["raw_data_1"]["selog"]["Temperature"]["value_log"][...]
        assert "connection_status" in temp_group
        temp = temp_group["value"]
        assert temp.coords["time"].dtype == "datetime64"
        assert str(temp.unit) == "K"
        assert f["raw_data_1"]["selog"]["Spectrum"]["value_log"][...]["value"].ndim == 2


def check_geometry(run: dict) -> None:
    """The check nobody here wrote: scippnexus computes every position from the file alone
    (depends_on chains, pixel offsets), scippneutron converts time of flight to d-spacing,
    and the powder's peaks are where the DAE put them."""
    from scippneutron.conversion import graph

    from ioc.simulated_dae import DaeSettings

    with snx.File(run["path"]) as f:
        entry = f["raw_data_1"]
        source = snx.compute_positions(entry["instrument/source"][...])["position"]
        sample = snx.compute_positions(entry["sample"][...])["position"]
        banks = {name: snx.compute_positions(entry[f"instrument/{name}"][...])["events"]
                 for name in ("panel", "backscatter")}
        monitor = snx.compute_positions(entry["monitor_1"][...])
    assert source.value.tolist() == [0, 0, -10] and sample.value.tolist() == [0, 0, 0]
    assert banks["panel"].sizes == {"dim_0": 24, "dim_1": 32}
    # every event is in one bank's pixels: the banks' events add up to the run's
    assert sum(int(b.bins.size().sum().value) for b in banks.values()) == run["total"]
    assert monitor["events"].bins.size().sum().value > 0  # the monitor's own stream
    assert monitor["position"].value.tolist() == [0, 0, -1]
    conversion = {**graph.beamline.beamline(scatter=True), **graph.tof.elastic("tof")}
    d = []
    for events in banks.values():
        events = events.assign_coords(source_position=source, sample_position=sample)
        events = events.bins.assign_coords(
            tof=events.bins.coords["event_time_offset"].to(dtype="float64", unit="us"))
        d.append(events.transform_coords("dspacing", graph=conversion).bins.concat()
                 .bins.constituents["data"].coords["dspacing"].values)
    d = np.concatenate(d)
    inside = (d > 0.5) & (d < 3.0)
    background = inside.sum() / 2.5  # events per Å, peaks included: an upper bound
    for d0 in DaeSettings().d_spacings:
        near = np.abs(d - d0) < 0.03 * d0
        assert near.sum() / (0.06 * d0) > 5 * background, f"no peak at {d0} Å"
        assert abs(np.median(d[near]) - d0) < 0.005 * d0, (d0, np.median(d[near]))


def test_two_runs_every_event_in_the_file(instrument):
    first = do_run(instrument, "first sample", 299.0, 0.5)
    check_file(first, "first sample", instrument.kafka)
    check_geometry(first)
    second = do_run(instrument, "second sample", 298.5, -0.75)
    check_file(second, "second sample", instrument.kafka)
    assert second["run_number"] == first["run_number"] + 1


def test_run_numbers_persist_across_an_ioc_restart(instrument):
    g = Genie(instrument.prefix)
    g.waitfor_runstate("SETUP")
    before = g.get("DAE:IRUNNUMBER")  # in SETUP, as ISISDAE: the number the next run gets
    instrument.restart("run-control-ioc")
    wait_until(lambda: g.get("DAE:IRUNNUMBER") is not None, 30, "the IOC back")
    assert g.get("DAE:IRUNNUMBER") == before
    g.begin()
    assert g.get("DAE:IRUNNUMBER") == before
    g.end()
    assert (instrument.data_dir / f"SYS{before:08d}.nxs").exists()


def test_commands_in_the_wrong_state_fail_the_put_and_send_nothing(instrument):
    g = Genie(instrument.prefix)
    g.waitfor_runstate("SETUP")
    stops = count_messages(instrument.kafka, "SYS_runInfo", "6s4t")
    with pytest.raises(Exception, match="ENDRUN refused: run state is SETUP"):
        ca_write(instrument.pv("DAE:ENDRUN"), "1", notify=True, data_type=ChannelType.STRING)
    assert "ENDRUN refused" in g.text("DAE:ERRMSGS")
    for command in ("PAUSERUN", "RESUMERUN", "ABORTRUN"):
        with pytest.raises(Exception, match="refused"):
            ca_write(instrument.pv(f"DAE:{command}"), 1, notify=True)
    assert count_messages(instrument.kafka, "SYS_runInfo", "6s4t") == stops
    # a string "1" put starts a run; a second BEGINRUN is refused while RUNNING
    ca_write(instrument.pv("DAE:BEGINRUN"), "1", notify=True, data_type=ChannelType.STRING)
    g.waitfor_runstate("RUNNING")
    starts = count_messages(instrument.kafka, "SYS_runInfo", "pl72")
    with pytest.raises(Exception, match="BEGINRUN refused: run state is RUNNING"):
        ca_write(instrument.pv("DAE:BEGINRUN"), "1", notify=True, data_type=ChannelType.STRING)
    assert count_messages(instrument.kafka, "SYS_runInfo", "pl72") == starts
    # pausing stops counting
    g.put("DAE:PAUSERUN", 1)
    g.waitfor_runstate("PAUSED")
    paused = g.get("DAE:TOTALCOUNTS")
    time.sleep(0.8)
    assert g.get("DAE:TOTALCOUNTS") == paused
    g.put("DAE:RESUMERUN", 1)
    g.waitfor_runstate("RUNNING")
    wait_until(lambda: g.get("DAE:TOTALCOUNTS") > paused, 5, "counting to resume")
    number = g.get("DAE:IRUNNUMBER")
    g.end()
    with h5py.File(instrument.data_dir / f"SYS{number:08d}.nxs") as f:
        assert len(f["raw_data_1/detector_1_events/event_id"]) == g.get("DAE:TOTALCOUNTS")


def test_malformed_messages_on_every_topic_are_skipped(instrument):
    from datastream.kafka_client import make_producer

    g = Genie(instrument.prefix)
    g.begin()
    producer = make_producer(instrument.kafka)
    for topic in ("SYS_runInfo", "SYS_events", "SYS_sampleEnv"):
        for junk in (b"", b"xx", b"\x00\x00\x00\x00ev44" + b"\xff" * 64,
                     b"\x00\x00\x00\x00pl72" + b"\x01" * 40):
            producer.produce(topic, junk, timestamp=time.time_ns() // 1_000_000)
    producer.flush(10)
    time.sleep(1.0)
    number = g.get("DAE:IRUNNUMBER")
    g.end()
    total = g.get("DAE:TOTALCOUNTS")
    with h5py.File(instrument.data_dir / f"SYS{number:08d}.nxs") as f:
        assert len(f["raw_data_1/detector_1_events/event_id"]) == total
    assert g.text("FILEWRITER:STATE") in ("FINISHED", "IDLE")
    # the live view skipped the junk too, and counted the run exactly (its page)

    def live_events() -> int | None:
        status, body = http_get(f"http://127.0.0.1:{instrument.http_port}/api/live")
        return json.loads(body)["counters"].get("EVENTS") if status == 200 else None

    wait_until(lambda: live_events() == total, 20, f"the live view to count {total} events")
    assert all(s.alive() for s in instrument.services.values())


def test_a_dead_writer_shows_unavailable_and_comes_back(instrument):
    g = Genie(instrument.prefix)
    writer = instrument.services["filewriter"]
    writer.kill()
    wait_until(lambda: g.text("FILEWRITER:STATE") == "UNAVAILABLE", 15, "UNAVAILABLE")
    assert g.get("FILEWRITER:HEARTBEAT_AGE") > 5
    writer.start()
    wait_until(lambda: g.text("FILEWRITER:STATE") in ("IDLE", "FINISHED"), 60, "the writer back")


def test_forwarder_status_pvs(instrument):
    g = Genie(instrument.prefix)
    wait_until(lambda: g.text("FORWARDER:STATE") == "RUNNING", 15, "FORWARDER:STATE RUNNING")
    # the six sample-environment streams and the DAE run log
    assert g.get("FORWARDER:STREAMS") == 6 + len(RUNLOG_PVS)
    wait_until(lambda: g.get("FORWARDER:CONNECTED") == 6 + len(RUNLOG_PVS), 15,
               "every stream connected")
    assert 0 <= g.get("FORWARDER:HEARTBEAT_AGE") < 6


def test_a_standalone_write_job_from_pvs(instrument):
    """A calibration file without a DAE run: file name, structure file, START, STOP."""
    g = Genie(instrument.prefix)
    g.waitfor_runstate("SETUP")
    structure = instrument.config_path.parent / "calibration.json"  # the config folder
    structure.write_text(json.dumps({"children": [{
        "type": "group", "name": "entry", "attributes": {"NX_class": "NXentry"}, "children": [
            {"module": "dataset", "config": {"name": "title", "values": "vanadium"}},
            {"type": "group", "name": "temperature", "attributes": {"NX_class": "NXlog"},
             "children": [{"module": "f142", "config": {
                 "topic": "SYS_sampleEnv", "source": instrument.pv("SE:TEMP"),
                 "dtype": "double", "value_units": "K"}}]}]}]}))
    # refused puts fail with the reason, and send nothing
    g.put("FILEWRITER:JOB:FILENAME_SP", "../escape.nxs")
    g.put("FILEWRITER:JOB:STRUCTURE_SP", str(structure))
    with pytest.raises(Exception, match="plain file name"):
        ca_write(instrument.pv("FILEWRITER:JOB:START"), 1, notify=True)
    assert "plain file name" in g.text("FILEWRITER:JOB:ERRMSG")
    with pytest.raises(Exception, match="no standalone job"):
        ca_write(instrument.pv("FILEWRITER:JOB:STOP"), 1, notify=True)

    g.put("FILEWRITER:JOB:FILENAME_SP", "CALIB0001.nxs")
    g.put("FILEWRITER:JOB:START", 1)
    assert g.text("FILEWRITER:JOB:ERRMSG") == ""
    wait_until(lambda: g.text("FILEWRITER:STATE") == "WRITING", 20, "the writer to take the job")
    assert g.text("FILEWRITER:FILENAME") == "CALIB0001.nxs"
    job_id = g.text("FILEWRITER:JOB:ID")
    assert job_id and g.text("FILEWRITER:JOBID") == job_id
    time.sleep(1.0)
    g.put("FILEWRITER:JOB:STOP", 1)
    wait_until(lambda: g.text("FILEWRITER:LASTFILE").endswith("CALIB0001.nxs"), 30,
               "the file to be finished")
    wait_until(lambda: g.text("FILEWRITER:JOB:ID") == "", 10, "JOB:ID to clear")
    assert g.text("DAE:RUNSTATE") == "SETUP"  # no run was involved
    with snx.File(instrument.data_dir / "CALIB0001.nxs") as f:
        assert f["entry"]["title"][()] == "vanadium"
        # the temperature it began with (the forwarder re-sends it periodically)
        assert f["entry"]["temperature"][...]["value"].sizes["time"] >= 1
