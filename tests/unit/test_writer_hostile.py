"""Hostile input to the file writer, without a broker: a run start that cannot be opened is
answered and forgotten (never the writer's end, nor, journalled, its end at every start); a
bad data message is counted and skipped with the file kept whole; a file name may not reach
the services' folders of the data dir nor hold control characters."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import flatbuffers
import h5py
import numpy as np
import pytest
from streaming_data_types.action_response_answ import deserialise_answ
from streaming_data_types.alarm_al00 import Severity, serialise_al00
from streaming_data_types.epics_connection_ep01 import ConnectionInfo, serialise_ep01
from streaming_data_types.eventdata_ev42 import serialise_ev42
from streaming_data_types.eventdata_ev44 import serialise_ev44
from streaming_data_types.fbschemas.eventdata_ev44 import Event44Message
from streaming_data_types.logdata_f144 import serialise_f144
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import KafkaSettings
from datastream.schemas import schema_id
from datastream.schemas.f142 import serialise_f142
from filewriter.commands import CommandError, StartJob, parse_start, parse_stop
from filewriter.job import JobSettings, JobStartError, WriteJob
from filewriter.output_path import UnsafePath, resolve_output
from filewriter.service import FileWriterService, ServiceSettings
from filewriter.timing import Window

MS = 1_000_000
START_NS = 1_700_000_000_000 * MS
TOPIC = "HOSTILE_events"
LOGS = "HOSTILE_sampleEnv"


def _group(name: str, *children: dict) -> dict:
    return {"type": "group", "name": name, "children": list(children)}


def _structure(*children: dict) -> dict:
    return {"children": [_group("entry", *children)]}


# run starts whose structure passes parse_start but cannot be built: each killed the writer
POISON_STRUCTURES = {
    "module config is a list": _structure(_group("t", {"module": "f144", "config": [1]})),
    "link whose name exists": _structure(
        {"module": "dataset", "config": {"name": "title", "values": "x"}},
        {"module": "link", "config": {"name": "title", "source": "/entry"}}),
    "group name not a string": _structure({"type": "group", "name": 7}),
    "children not a list of objects": {"children": [{"type": "group", "name": "g",
                                                     "children": 5}]},
    "dataset of an absurd dtype": _structure(
        {"module": "dataset", "config": {"name": "d", "values": [1], "dtype": "int128"}}),
    "dataset values no dtype holds": _structure(
        {"module": "dataset", "config": {"name": "d", "values": [1, [2, [3]]]}}),
    "attribute of an object": {"attributes": {"a": {"b": 1}}},
    "waveform of 10^12 values": _structure(_group("w", {"module": "f144", "config": {
        "topic": LOGS, "source": "W", "array_size": 10**12}})),
    "histogram of 10^10 bins": _structure(_group("h", {"module": "hs01", "config": {
        "topic": LOGS, "source": "H", "shape": [{"size": 10**5}, {"size": 10**5}]}})),
    "chunk size a list": _structure(_group("e", {"module": "ev44", "config": {
        "topic": TOPIC, "source": "DAE", "chunk_size": [1]}})),
    "mdat of a name": _structure({"module": "mdat", "config": {"items": [["start_time"]]}}),
}


def _command(tmp_path: Path, structure: dict, filename: str = "RUN.nxs") -> StartJob:
    return StartJob(job_id=str(uuid.uuid4()), filename=filename, start_ns=START_NS,
                    stop_ns=None, nexus_structure=structure, control_topic="",
                    run_name="", instrument="", service_id="")


def _job(tmp_path: Path, structure: dict, filename: str = "RUN.nxs",
         resume: bool = False) -> WriteJob:
    return WriteJob(_command(tmp_path, structure, filename), JobSettings(output_dir=tmp_path),
                    KafkaSettings("unused:9092"), resume=resume)


@pytest.mark.parametrize("structure", POISON_STRUCTURES.values(), ids=POISON_STRUCTURES.keys())
def test_a_structure_that_cannot_be_built_is_refused_and_leaves_no_file(tmp_path, structure):
    with pytest.raises(JobStartError) as info:
        _job(tmp_path, structure).open()
    assert info.value.status_code == 500 and "nexus_structure" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_name_too_long_for_the_filesystem_is_refused_with_400(tmp_path):
    with pytest.raises(JobStartError) as info:
        _job(tmp_path, _structure(), "X" * 300 + ".nxs").open()
    assert info.value.status_code == 400 and "longer than" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# -- the service: a start that cannot be opened is answered, and the writer goes on --

class _Answers:
    """Stands in for the service's producer side: what it would send, decoded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, payload))
        return True

    def answers(self) -> list:
        return [deserialise_answ(p) for _, p in self.sent if schema_id(p) == "answ"]


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The real service, its Kafka clients made but never used (no broker is contacted: the
    pool is not joined and nothing is produced)."""
    settings = ServiceSettings(job_pool_topic="HOSTILE_runInfo",
                               status_topic="HOSTILE_runInfo", group_id="fw-hostile",
                               job=JobSettings(output_dir=tmp_path), instance_id="fw-test")
    svc = FileWriterService(settings, KafkaSettings("127.0.0.1:1"))
    svc.sent = _Answers()
    monkeypatch.setattr(svc, "_send", svc.sent)
    monkeypatch.setattr(svc, "_follow_control", lambda topic, since_ms: None)
    monkeypatch.setattr(svc, "_subscribe_pool", lambda: None)
    yield svc
    svc._pool.close()


def _pl72(job_id: str, structure: dict | str, filename: str = "RUN.nxs", **kw) -> bytes:
    text = structure if isinstance(structure, str) else json.dumps(structure)
    return serialise_pl72(job_id, filename, start_time=START_NS // MS, nexus_structure=text,
                          control_topic="HOSTILE_runInfo", **kw)


@pytest.mark.parametrize("structure", [POISON_STRUCTURES["module config is a list"],
                                       POISON_STRUCTURES["link whose name exists"]],
                         ids=["config list", "link over a name"])
def test_a_start_that_cannot_be_opened_is_answered_and_forgotten(service, tmp_path,
                                                                 structure):
    job_id = str(uuid.uuid4())
    service._on_pool_message(_pl72(job_id, structure), "HOSTILE_runInfo", 5)
    [answer] = service.sent.answers()
    assert answer.job_id == job_id and answer.status_code == 500, answer.message
    assert "nexus_structure" in answer.message
    assert service.running_job is None
    assert service.journal.owned() == []  # not resumed at the next start
    assert not (tmp_path / "RUN.nxs").exists()
    # and the next run start is written as usual
    good = str(uuid.uuid4())
    service._on_pool_message(_pl72(good, {"children": []}, "NEXT.nxs",
                                   stop_time=START_NS // MS + 1), "HOSTILE_runInfo", 6)
    assert service.sent.answers()[-1].status_code == 201
    assert (tmp_path / "NEXT.nxs").exists()
    service.running_job.abandon()


def test_a_journalled_job_that_cannot_be_opened_is_dropped_not_looped(service, tmp_path):
    """The writer died on it before (or its record was written by an older writer): at the
    next start it is answered and forgotten, and the other records still resumed."""
    bad, good = str(uuid.uuid4()), str(uuid.uuid4())
    service.journal.add(bad, _pl72(bad, POISON_STRUCTURES["module config is a list"]))
    service.journal.add(good, _pl72(good, {"children": []}, "GOOD.nxs"))
    service._next_job()
    codes = {a.job_id: a.status_code for a in service.sent.answers()}
    assert codes == {bad: 500, good: 201}
    assert [job for job, _ in service.journal.owned()] == [good]
    assert service.running_job.command.job_id == good
    service.running_job.abandon()


def test_a_journal_record_holding_another_job_is_dropped(service):
    other = str(uuid.uuid4())
    service.journal.add(str(uuid.uuid4()), _pl72(other, POISON_STRUCTURES["attribute of an "
                                                                           "object"]))
    service._next_job()
    assert service.journal.owned() == []


# -- run starts refused when parsed, before they are journalled --

@pytest.mark.parametrize(("overrides", "message"), [
    ({"start_time": 2**63 // MS + 1}, "start_time"),
    ({"stop_time": 2**64 - 1}, "stop_time"),
    ({"control_topic": "no spaces allowed"}, "control_topic"),
    ({"control_topic": "x" * 250}, "control_topic"),
    ({"filename": "runinfo/HOSTILE_runnumber.txt"}, "services' folder"),
    ({"filename": "a\u202egnp.nxs"}, "bidi"),
    ({"filename": "a\x1b[2Jb.nxs"}, "control character"),
])
def test_bad_run_starts_get_400(overrides, message):
    args = {"job_id": str(uuid.uuid4()), "filename": "X.nxs", "start_time": START_NS // MS,
            "nexus_structure": "{}"} | overrides
    with pytest.raises(CommandError, match=message) as info:
        parse_start(serialise_pl72(**args))
    assert info.value.status_code == 400


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' + "9" * 5000 + "}"],
                         ids=["nested past the parser", "an integer of 5000 digits"])
def test_a_structure_json_cannot_hold_is_a_command_error(text):
    with pytest.raises(CommandError, match="not valid JSON") as info:
        parse_start(serialise_pl72(str(uuid.uuid4()), "X.nxs", nexus_structure=text))
    assert info.value.status_code == 500


def test_a_stop_time_out_of_range_is_refused():
    with pytest.raises(CommandError, match="stop_time") as info:
        parse_stop(serialise_6s4t(str(uuid.uuid4()), stop_time=2**64 - 1))
    assert info.value.status_code == 400


# -- names --

@pytest.mark.parametrize("name", [
    "runinfo", "runinfo/X_runnumber.txt", "runinfo/sub/x.nxs", "RunInfo/x.nxs",
    ".filewriter-jobs/fw/0000.pl72", ".filewriter-jobs", "./runinfo/x.nxs",
    "a\x01b.nxs", "a\nb.nxs", "tab\there.nxs", "del\x7f.nxs", "a\x1fb.nxs",
    "evil\u202a.nxs", "evil\u202e.nxs", "evil\u2066.nxs", "evil\u2069.nxs",
    "X" * 300 + ".nxs", "sub/" + "Y" * 250, "a\udcffb.nxs"])
def test_names_in_service_folders_or_with_control_characters_are_refused(tmp_path, name):
    with pytest.raises(UnsafePath):
        resolve_output(tmp_path, name)


def test_a_link_in_the_data_dir_to_a_service_folder_is_refused(tmp_path):
    (tmp_path / "runinfo").mkdir()
    (tmp_path / "innocent").symlink_to(tmp_path / "runinfo")
    with pytest.raises(UnsafePath, match="services' folder"):
        resolve_output(tmp_path, "innocent/X_runnumber.txt")


def test_names_like_the_service_folders_are_fine(tmp_path):
    for name in ("runinfo.nxs", "runinfo2/x.nxs", "cycle/runinfo/x.nxs", "filewriter-jobs.nxs",
                 "Ünïcode ok.nxs"):
        assert resolve_output(tmp_path, name) == tmp_path / name


def test_a_run_start_naming_the_run_number_store_is_answered_400(service, tmp_path):
    job_id = str(uuid.uuid4())
    service._on_pool_message(_pl72(job_id, {"children": []}, "runinfo/INST_runnumber.txt"),
                             "HOSTILE_runInfo", 1)
    [answer] = service.sent.answers()
    assert answer.status_code == 400 and "runinfo" in answer.message
    assert not (tmp_path / "runinfo").exists() and service.journal.owned() == []


# -- data messages: a bad one is counted and skipped, the file stays whole --

def _ev44_without_vectors() -> bytes:
    builder = flatbuffers.Builder(64)
    source = builder.CreateString("DAE")
    Event44Message.Event44MessageStart(builder)
    Event44Message.Event44MessageAddMessageId(builder, 3)
    Event44Message.Event44MessageAddSourceName(builder, source)
    builder.Finish(Event44Message.Event44MessageEnd(builder), file_identifier=b"ev44")
    return bytes(builder.Output())


def _frame(t_ns: int, n: int, message_id: int) -> bytes:
    ids = np.arange(n, dtype=np.int32) + 1000 * message_id
    return serialise_ev44("DAE", message_id, np.array([t_ns], np.int64),
                          np.array([0], np.int32), ids % 997, ids)


BAD_DATA = {
    "ev44 without vectors": (TOPIC, _ev44_without_vectors()),
    "ev42 pulse past int64": (TOPIC, serialise_ev42("DAE", 9, 2**64 - 1, np.arange(3),
                                                    np.arange(3))),
    "f144 before the epoch": (LOGS, serialise_f144("T", 5.0, -1)),
    "f142 past int64": (LOGS, serialise_f142(5.0, "T", 2**64 - 1)),
    "al00 before the epoch": (LOGS, serialise_al00("T", -10, Severity.MAJOR, "HIHI")),
    "ep01 before the epoch": (LOGS, serialise_ep01(-10, ConnectionInfo.CONNECTED, "T")),
    "int log NaN": (LOGS, serialise_f144("N", float("nan"), START_NS + 5)),
}


def _data_job(tmp_path: Path) -> WriteJob:
    structure = _structure(
        _group("events", {"module": "ev44", "config": {"topic": TOPIC, "source": "DAE"}}),
        _group("temp", {"module": "f144", "config": {"topic": LOGS, "source": "T"}}),
        _group("count", {"module": "f144", "config": {"topic": LOGS, "source": "N",
                                                      "dtype": "int32"}}),
        {"module": "mdat", "config": {"items": ["start_time", "end_time"]}})
    job = _job(tmp_path, structure)
    job.open()
    return job


@pytest.mark.parametrize("bad", BAD_DATA.values(), ids=BAD_DATA.keys())
def test_a_bad_data_message_is_skipped_and_the_file_closes_whole(tmp_path, bad):
    job = _data_job(tmp_path)
    window = Window(START_NS, START_NS + 10 * 1000 * MS)
    job._dispatch(TOPIC, _frame(START_NS + MS, 10, 1), window, 0)
    job._dispatch(LOGS, serialise_f144("T", 1.5, START_NS + 2 * MS), window, 1)
    job._dispatch(*bad, window, 2)
    job._flush()
    job._dispatch(TOPIC, _frame(START_NS + 3 * MS, 7, 2), window, 3)
    job._dispatch(LOGS, serialise_f144("T", 2.5, START_NS + 4 * MS), window, 4)
    job._dispatch(LOGS, serialise_f144("N", 42, START_NS + 4 * MS), window, 5)
    job.request_stop(START_NS + 10 * 1000 * MS)
    job._close_file()
    written = job.events_written
    malformed = job._malformed
    counts = {k: n for ws in job._writers.values() for w in ws for k, n in w.counts.items()}
    with h5py.File(tmp_path / "RUN.nxs", "r") as f:
        assert f["entry/events/event_id"].shape == (17,) and written == 17
        assert f["entry/events/event_time_zero"][:].tolist() == [START_NS + MS,
                                                                 START_NS + 3 * MS]
        assert f["entry/temp/value"][:].tolist() == [1.5, 2.5]
        assert f["entry/temp/time"][:].tolist() == [START_NS + 2 * MS, START_NS + 4 * MS]
        assert f["entry/count/value"][:].tolist() == [42]
        assert f["entry/end_time"][()]
        # a bad alarm or connection state is no row either
        assert len(f["entry/temp/alarm_time"]) == len(f["entry/temp/connection_status_time"]) == 0
    # counted: as malformed, or (a value its dtype cannot hold) as unconvertible; an ev44
    # without vectors may also be read as a message of no events
    counted = malformed + counts.get("unconvertible", 0)
    assert counted == 1 or (bad is BAD_DATA["ev44 without vectors"] and counted == 0)
