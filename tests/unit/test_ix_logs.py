"""Run and SE logs as Mantid's LoadNexusLogs loads them (issue 20): isis_log writes an f142 /
f144 stream into an NXlog with times in seconds after the run start (`start`), values of the
dtypes Mantid takes and units from the source's un00; the ISIS template puts them in IXrunlog
and IXselog (IXseblock / value_log), and keeps kafka-to-nexus's layout on request."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pytest
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.logdata_f144 import serialise_f144

from datastream.kafka_client import KafkaSettings
from datastream.run_window import Window
from datastream.schemas.f142 import serialise_f142
from datastream.schemas.un00 import serialise_un00
from datastream.streams import LogStream, Stream
from filewriter.job import JobSettings, WriteJob
from filewriter.modules import DECODERS, WRITERS
from filewriter.run_context import RunContext
from ioc.nexus_template import KAFKA_TO_NEXUS, RunMetadata, nexus_structure
from tests.unit.test_icp_file_mantid import check_mantid_file
from tests.unit.test_icp_file_modules import MONITOR, TOPIC, command, isis_stream

S = 1_000_000_000
MS = 1_000_000
START = 1_700_000_000_000 * MS
STOP = START + 10 * S
W = Window(START, STOP)
SE_TOPIC = "TST_sampleEnv"
RUN_LOG_TOPIC = "TST_runLog"


def feed(writer, payload: bytes, window: Window = W) -> None:
    writer.write(DECODERS[payload[4:8].decode()](payload), window)


def se_block(h5file: h5py.File, name: str = "T") -> h5py.Group:
    """selog/<name>/value_log as the template makes it, before the module fills it."""
    selog = h5file.require_group("selog")
    selog.attrs["NX_class"] = "IXselog"
    block = selog.create_group(name)
    block.attrs["NX_class"] = "IXseblock"
    log = block.create_group("value_log")
    log.attrs["NX_class"] = "NXlog"
    return log


def absolute_ns(time: h5py.Dataset) -> list[int]:
    """The times as Mantid makes them: `start` plus the seconds (to the nanosecond here)."""
    start = dt.datetime.fromisoformat(time.attrs["start"])
    start_ns = int(start.timestamp()) * S + start.microsecond * 1000
    return [start_ns + round(t * 1e9) for t in time[:]]


def test_f144_and_un00_make_a_mantid_nxlog(h5file):
    log = se_block(h5file)
    writer = WRITERS["isis_log"](log, {"dtype": "double", "value_units": "C"},
                                 RunContext(START))
    feed(writer, serialise_un00("T", START - 5 * S, "K"))  # at connect, long before
    feed(writer, serialise_f144("T", 280.0, START - 2 * S))  # the value at start
    feed(writer, serialise_f144("T", 290.5, START + 1 * S))
    feed(writer, serialise_al00("T", START + 2 * S, Severity.MAJOR, "HIHI"))
    feed(writer, serialise_f144("T", 300.0, START + 3 * S + 7))
    feed(writer, serialise_f144("T", 999.0, STOP + S))  # after the stop
    writer.close()
    time, value = log["time"], log["value"]
    assert time.dtype == np.float64 and time.attrs["units"] == "second"
    assert time.attrs["start"] == RunContext(START).start_iso
    assert time[:].tolist() == [-2.0, 1.0, 3.000000007]
    assert absolute_ns(time) == [START - 2 * S, START + S, START + 3 * S + 7]
    assert value.dtype == np.float64 and value[:].tolist() == [280.0, 290.5, 300.0]
    assert value.attrs["units"] == "K"  # the stream's, over the configured
    assert log["minimum_value"].attrs["units"] == "K"
    assert log["alarm_time"][:].tolist() == [2.0]
    assert log["alarm_time"].attrs["start"] == time.attrs["start"]
    assert "cue_index" not in log and "cue_timestamp_zero" not in log
    assert writer.warnings == []


def test_a_start_with_a_part_millisecond_still_times_to_the_nanosecond(h5file):
    log = se_block(h5file)
    start = START + 123_456  # `start` is to the millisecond; the times count from it
    writer = WRITERS["isis_log"](log, {}, RunContext(start))
    feed(writer, serialise_f144("T", 1.0, start + 1), Window(start, None))
    writer.close()
    assert absolute_ns(log["time"]) == [start + 1]


@pytest.mark.parametrize(("dtype", "stored"), [
    ("int8", np.int32), ("int16", np.int32), ("uint16", np.int32), ("int32", np.int32),
    ("uint32", np.float64), ("int64", np.float64), ("long", np.float64),
    ("uint64", np.float64), ("float", np.float64), ("float32", np.float64),
    ("double", np.float64),
])
def test_values_take_a_dtype_mantid_loads(h5file, dtype, stored):
    log = se_block(h5file)
    writer = WRITERS["isis_log"](log, {"dtype": dtype}, RunContext(START))
    feed(writer, serialise_f142(7, "T", START + S))
    writer.close()
    assert log["value"].dtype == stored and log["value"][:].tolist() == [7]


def test_a_counter_past_int32_stays_exact(h5file):
    log = se_block(h5file)
    writer = WRITERS["isis_log"](log, {"dtype": "int64"}, RunContext(START))
    feed(writer, serialise_f144("C", np.int64(2**40 + 1), START + S))
    writer.close()
    assert int(log["value"][0]) == 2**40 + 1 and writer.counts["unconvertible"] == 0


def test_strings_are_fixed_length_bytes(h5file):
    log = se_block(h5file)
    writer = WRITERS["isis_log"](log, {"dtype": "string", "string_size": 16},
                                 RunContext(START))
    feed(writer, serialise_f142("idle", "S", START + S))
    writer.close()
    assert log["value"].dtype == np.dtype("S16") and log["value"][:].tolist() == [b"idle"]


def test_a_units_change_mid_run_leaves_the_last_units(h5file):
    log = se_block(h5file)
    writer = WRITERS["isis_log"](log, {}, RunContext(START))
    feed(writer, serialise_un00("T", START - S, "K"))
    feed(writer, serialise_f144("T", 1.0, START + S))
    writer.flush()
    assert log["value"].attrs["units"] == "K"  # a live reader sees them already
    feed(writer, serialise_un00("T", START + 2 * S, "mK"))
    feed(writer, serialise_f144("T", 1000.0, START + 3 * S))
    writer.close()
    assert log["value"].attrs["units"] == "mK"


def test_units_the_pv_has_not_give_the_configured_or_none(h5file):
    configured = WRITERS["isis_log"](se_block(h5file, "A"), {"units": "V"}, RunContext(START))
    feed(configured, serialise_un00("A", START, "mV"))
    feed(configured, serialise_un00("A", START + S, None))
    configured.close()
    assert h5file["selog/A/value_log/value"].attrs["units"] == "V"
    bare = WRITERS["isis_log"](se_block(h5file, "B"), {}, RunContext(START))
    feed(bare, serialise_un00("B", START, "mV"))
    bare.flush()
    feed(bare, serialise_un00("B", START + S, None))
    bare.close()
    assert "units" not in h5file["selog/B/value_log/value"].attrs


def test_the_f144_module_takes_un00_units_too(h5file):
    group = h5file.create_group("T")
    writer = WRITERS["f144"](group, {"units": "C"})
    feed(writer, serialise_un00("T", START, "K"))
    feed(writer, serialise_f144("T", 1.0, START + S))
    writer.close()
    assert group["value"].attrs["units"] == "K" and group["time"].dtype == np.uint64


def test_isis_log_warns_outside_an_nxlog(h5file):
    writer = WRITERS["isis_log"](h5file.create_group("x"), {}, RunContext(START))
    assert writer.warnings and "NXlog" in writer.warnings[0]


# --- the template and a whole job ---

def se_logs(topic: str = SE_TOPIC) -> list[LogStream]:
    return [LogStream(Stream("TE:TST:TEMP", "ca", "f144", topic), "Temperature", "C"),
            LogStream(Stream("TE:TST:STATUS", "ca", "f142", topic), "Status", dtype="string")]


def run_logs(topic: str = RUN_LOG_TOPIC) -> list[LogStream]:
    return [LogStream(Stream("TE:TST:DAE:GOODFRAMES", "ca", "f142", topic), "goodframes",
                      dtype="int64"),
            LogStream(Stream("TE:TST:DAE:RUNSTATE", "ca", "f142", topic), "runstate",
                      dtype="int32")]


def structure(layout: str | None = None, instrument: str = "TST", events: str = TOPIC,
              se_topic: str = SE_TOPIC, run_log_topic: str = RUN_LOG_TOPIC) -> dict:
    """The run control's template with SE and run logs, the monitor as isis_histogram's."""
    kwargs = {"log_layout": layout} if layout else {}
    s = nexus_structure(RunMetadata(instrument, 7, "a title", ("Ada",), "1234"), events,
                        "DAE", se_logs(se_topic), run_logs(run_log_topic), **kwargs)
    entry = s["children"][0]["children"]
    histogram = next(c for c in entry if c.get("module") == "isis_histogram")
    histogram["config"]["monitors"] = [{"source": MONITOR, "detector_id": 100001,
                                        "name": "monitor_1"}]
    return s


def log_messages(start_ns: int, se_topic: str = SE_TOPIC, run_log_topic: str = RUN_LOG_TOPIC
                 ) -> list[tuple[str, bytes]]:
    """(topic, payload): units then values for each log, a units change mid-run."""
    temp, status = "TE:TST:TEMP", "TE:TST:STATUS"
    frames, state = "TE:TST:DAE:GOODFRAMES", "TE:TST:DAE:RUNSTATE"
    return [
        (se_topic, serialise_un00(temp, start_ns - 5 * S, "C")),
        (se_topic, serialise_f144(temp, 20.5, start_ns - S)),
        (se_topic, serialise_f142("idle", status, start_ns - S)),
        (se_topic, serialise_f144(temp, 21.0, start_ns + S // 2)),
        (se_topic, serialise_un00(temp, start_ns + S, "K")),
        (se_topic, serialise_f144(temp, 294.5, start_ns + S)),
        (se_topic, serialise_f142("busy", status, start_ns + S)),
        (run_log_topic, serialise_un00(frames, start_ns - S, None)),
        (run_log_topic, serialise_f142(0, frames, start_ns)),
        (run_log_topic, serialise_f142(12, frames, start_ns + S)),
        (run_log_topic, serialise_f142(1, state, start_ns)),
    ]


def hostile_un00(start_ns: int) -> list[bytes]:
    """un00s cut short and a un00 body under another schema's id: each is malformed."""
    good = serialise_un00("TE:TST:TEMP", start_ns, "mK")
    return [good[:n] for n in (8, 20, 30, 45, 58)] + [good[:4] + b"f144" + good[8:],
                                                      b"\x00\x00\x00\x00un00"]


def write_run(tmp_path: Path, layout: str | None = None, extra: list[tuple[str, bytes]] = ()
              ) -> tuple[Path, WriteJob]:
    stream = isis_stream()
    cmd = dataclasses.replace(command(), nexus_structure=structure(layout))
    job = WriteJob(cmd, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"))
    assert job.open() == []
    job.request_stop(stream.stop_ns)
    window = Window(stream.start_ns, stream.stop_ns)
    messages = [*log_messages(stream.start_ns), *extra]
    for offset, payload in enumerate(stream.payloads):
        job._dispatch(TOPIC, payload, window, offset)
        if offset < len(messages):  # the logs among the frames, as on the broker
            topic, message = messages[offset]
            job._dispatch(topic, message, window, offset)
        if offset % 50 == 0:
            job._flush()  # as the job does every second: units are written at a flush
    for offset, (topic, message) in enumerate(messages[len(stream.payloads):]):
        job._dispatch(topic, message, window, offset)
        job._flush()
    job._close_file()
    return job.path, job


def test_the_template_s_logs_are_what_mantid_loads(tmp_path):
    path, job = write_run(tmp_path)
    assert job._malformed == 0
    check_mantid_file(path)
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        temp = e["selog/Temperature/value_log"]
        assert temp["value"][:].tolist() == [20.5, 21.0, 294.5]
        assert temp["time"][:].tolist() == [-1.0, 0.5, 1.0]
        assert temp["value"].attrs["units"] == "K"  # the last un00 before the file closed
        assert temp["time"].attrs["start"] == RunContext(START).start_iso
        assert e["start_time"][()].decode()[:23] == temp["time"].attrs["start"][:23]
        status = e["selog/Status/value_log/value"]
        assert status.dtype.kind == "S" and status[:].tolist() == [b"idle", b"busy"]
        frames = e["runlog/goodframes"]
        assert frames.attrs["NX_class"] == "NXlog"
        assert frames["value"].dtype == np.float64 and frames["value"][:].tolist() == [0, 12]
        assert "units" not in frames["value"].attrs  # the PV has none
        assert e["runlog/runstate/value"].dtype == np.int32


def test_un00_of_no_log_is_ignored_and_hostile_un00_counted(tmp_path):
    hostile = hostile_un00(START)
    extra = [(SE_TOPIC, serialise_un00("TE:TST:NOBODY", START, "Pa")),
             ("TST_elsewhere", serialise_un00("TE:TST:TEMP", START, "Pa")),
             (TOPIC, serialise_un00("DAE", START, "Pa")),  # the events' source: not a log
             *((SE_TOPIC, h) for h in hostile)]
    path, job = write_run(tmp_path, extra=extra)
    assert job._malformed == len(hostile)
    check_mantid_file(path)  # nothing else lost
    with h5py.File(path) as f:
        temp = f["raw_data_1/selog/Temperature/value_log"]
        assert temp["value"].attrs["units"] == "K"
        assert temp["value"][:].tolist() == [20.5, 21.0, 294.5]
        assert "units" not in f["raw_data_1/detector_1_events/event_id"].attrs


def test_mutated_un00_never_cost_the_file(tmp_path):
    """Cut, flipped and absurd un00s of a log's source: each is skipped or labels the log
    with text an attribute holds; the values and the rest of the file are whole."""
    rng = np.random.default_rng(20)
    good = serialise_un00("TE:TST:TEMP", START, "K")
    mutants = []
    for _ in range(300):
        m = bytearray(good)
        for i in rng.integers(0, len(m), rng.integers(1, 4)):
            m[i] = rng.integers(0, 256)
        mutants.append(bytes(m[:rng.integers(0, len(m) + 1)] if rng.random() < 0.3 else m))
    # last, each flushed: units no attribute can hold would fail the flush, and the file
    mutants += [serialise_un00("TE:TST:TEMP", START, units)
                for units in ("K\x00x", "x" * 10_000, "\x1b[31m")]
    path, job = write_run(tmp_path, extra=[(SE_TOPIC, m) for m in mutants])
    assert 3 <= job._malformed <= len(mutants)
    check_mantid_file(path)
    with h5py.File(path) as f:
        value = f["raw_data_1/selog/Temperature/value_log/value"]
        assert value[:].tolist() == [20.5, 21.0, 294.5]
        units = value.attrs["units"]
        assert isinstance(units, str) and units.isprintable() and len(units) <= 256


def test_the_kafka_to_nexus_layout_stays_on_request(tmp_path):
    path, _ = write_run(tmp_path, KAFKA_TO_NEXUS)
    with h5py.File(path) as f:
        e = f["raw_data_1"]
        assert e["selog"].attrs["NX_class"] == "NXcollection"
        assert e["runlog"].attrs["NX_class"] == "NXcollection"
        temp = e["selog/Temperature"]
        assert temp.attrs["NX_class"] == "NXlog" and temp.attrs["writer_module"] == "f144"
        assert temp["time"].dtype == np.uint64 and temp["time"].attrs["units"] == "ns"
        assert temp["time"][:].tolist() == [START - S, START + S // 2, START + S]
        assert temp["value"].attrs["units"] == "K"


def test_the_template_s_layouts():
    def entry(layout: str | None = None) -> dict:
        return {c.get("name"): c for c in structure(layout)["children"][0]["children"]}

    mantid = entry()
    assert mantid["selog"]["attributes"][0]["values"] == "IXselog"
    block = mantid["selog"]["children"][0]
    assert block["name"] == "Temperature" and block["attributes"][0]["values"] == "IXseblock"
    [value_log] = block["children"]
    assert value_log["name"] == "value_log"
    assert value_log["children"][0]["module"] == "isis_log"
    assert value_log["children"][0]["config"]["value_units"] == "C"
    assert mantid["runlog"]["attributes"][0]["values"] == "IXrunlog"
    assert {c["children"][0]["module"] for c in mantid["runlog"]["children"]} == {"isis_log"}
    ess = entry(KAFKA_TO_NEXUS)
    assert ess["selog"]["children"][0]["children"][0]["module"] == "f144"
    with pytest.raises(ValueError, match="log layout"):
        entry("icp")


def test_the_dae_s_units_are_written_as_nexus_readers_parse_them(h5file):
    """The DAE's PVs say "uA hour" and "events/s" (IBEX's EGUs), which scippnexus cannot
    parse: the file says "uAh" and "counts/s", which it does, for the stream's units and the
    configured ones alike."""
    import scipp as sc

    charge = WRITERS["isis_log"](se_block(h5file, "GOODUAH"), {"dtype": "double"},
                                 RunContext(START))
    feed(charge, serialise_un00("GOODUAH", START, "uA hour"))
    rate = WRITERS["isis_log"](se_block(h5file, "COUNTRATE"),
                               {"dtype": "double", "units": "events/s"}, RunContext(START))
    for writer in (charge, rate):
        writer.close()
    units = [h5file[f"selog/{name}/value_log/value"].attrs["units"]
             for name in ("GOODUAH", "COUNTRATE")]
    assert units == ["uAh", "counts/s"]
    assert [str(sc.Unit(u)) for u in units] == ["µAh", "counts/s"]
