"""An aborted run (a 6s4t whose command_id starts with ABORT_PREFIX) leaves no file: the
command is recognised, and a job told to discard closes its file so it can be deleted,
with the `.partial` a resumed job keeps."""

from __future__ import annotations

import uuid

import pytest
from streaming_data_types.run_stop_6s4t import serialise_6s4t

from datastream.kafka_client import KafkaSettings
from filewriter.commands import ABORT_PREFIX, CommandError, StartJob, parse_stop
from filewriter.job import JobSettings, WriteJob

JOB = str(uuid.uuid4())
STATIC = {"children": [{"type": "group", "name": "entry",
                        "attributes": {"NX_class": "NXentry"}, "children": [
                            {"module": "dataset", "config": {"name": "title", "values": "x"}}]}]}


def test_the_abort_prefix_is_the_literal_run_control_sends():
    # ioc/run_control.py writes this literal without importing it: both sides pin it
    assert ABORT_PREFIX == "abort:"


def test_an_abort_stop_is_recognised_and_a_normal_one_is_not():
    command_id = f"{ABORT_PREFIX}{uuid.uuid4()}"
    stop = parse_stop(serialise_6s4t(JOB, command_id=command_id, stop_time=1_700_000_000_001))
    assert stop.abort and stop.command_id == command_id
    assert stop.stop_ns == 1_700_000_000_001_000_000
    assert not parse_stop(serialise_6s4t(JOB, command_id=str(uuid.uuid4()), stop_time=1)).abort
    assert not parse_stop(serialise_6s4t(JOB, stop_time=1)).abort


@pytest.mark.parametrize("command_id", ["abort:", "abort:run-5", "ABORT:" + str(uuid.uuid4()),
                                        "abort" + str(uuid.uuid4())])
def test_an_abort_without_a_uuid_after_the_prefix_is_refused(command_id):
    with pytest.raises(CommandError, match="not a UUID") as info:
        parse_stop(serialise_6s4t(JOB, command_id=command_id, stop_time=1))
    assert info.value.status_code == 400


def _job(tmp_path, resume=False):
    command = StartJob(job_id=JOB, filename="INST00000007.nxs", start_ns=1, stop_ns=None,
                       nexus_structure=STATIC, control_topic="", run_name="", instrument="",
                       service_id="")
    # no data topic: the job never talks to Kafka
    return WriteJob(command, JobSettings(output_dir=tmp_path), KafkaSettings("unused:9092"),
                    resume=resume)


def test_a_discarded_job_closes_its_file_and_deletes_it(tmp_path):
    job = _job(tmp_path)
    job.open()
    assert (tmp_path / "INST00000007.nxs").exists()
    job.discard()
    result = job.run()  # returns at once: an aborted run is not read to its end
    assert result.discarded and not result.abandoned and result.error is None
    assert job.discard_files() == ["INST00000007.nxs"]
    assert list(tmp_path.iterdir()) == []
    # the same name is free for the next run start (ISIS reuses the run number)
    again = _job(tmp_path)
    again.open()
    again.request_stop(2)
    assert again.run().error is None
    assert (tmp_path / "INST00000007.nxs").exists()


def test_a_resumed_job_discarded_leaves_no_partial_either(tmp_path):
    (tmp_path / "INST00000007.nxs").write_bytes(b"the killed writer's attempt")
    job = _job(tmp_path, resume=True)
    job.open()
    assert (tmp_path / "INST00000007.nxs.partial").exists()
    job.discard()
    result = job.run()
    assert result.discarded and not result.warnings
    assert sorted(job.discard_files()) == ["INST00000007.nxs", "INST00000007.nxs.partial"]
    assert list(tmp_path.iterdir()) == []
    assert job.discard_files() == []  # again (a second abort read after a restart): a no-op
