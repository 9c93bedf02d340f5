import json

import pytest
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.topics import InstrumentTopics
from ioc.standalone_job import JobRefused, StandaloneJob
from ioc.writer_status import WriterState
from tests.fakes import FakeProducer


class Writer:
    def __init__(self):
        self.expected, self.done = [], {}

    def expect(self, job_id):
        self.expected.append(job_id)

    def finished(self, job_id):
        return self.done.get(job_id)


@pytest.fixture
def job(tmp_path):
    state = {"now": WriterState.IDLE}
    j = StandaloneJob("TST", InstrumentTopics("TST"), FakeProducer(), Writer(),
                      lambda: state["now"], structures_dir=tmp_path,
                      clock_ns=lambda: 5_000_000_000)
    j.structure = tmp_path / "s.json"
    j.structure.write_text(json.dumps({"nexus_structure": {"children": []}}))
    j.state = state
    return j


def test_start_and_stop(job):
    job_id = job.start("CAL1.nxs", str(job.structure))
    start = deserialise_pl72(job.producer.topics("TST_runInfo")[0].value)
    assert (start.job_id, start.filename, start.start_time) == (job_id, "CAL1.nxs", 5000)
    assert json.loads(start.nexus_structure) == {"children": []}
    assert job.writer.expected == [job_id] and job.job_id == job_id
    with pytest.raises(JobRefused, match=r"already writing CAL1\.nxs"):
        job.start("CAL2.nxs", str(job.structure))
    job.stop()
    stop = deserialise_6s4t(job.producer.topics("TST_runInfo")[1].value)
    assert (stop.job_id, stop.stop_time) == (job_id, 5000)
    job.writer.done[job_id] = False
    assert job.job_id == ""
    with pytest.raises(JobRefused, match="no standalone job"):
        job.stop()


@pytest.mark.parametrize(("filename", "structure", "state", "message"), [
    ("", "s.json", WriterState.IDLE, "plain file name"),
    ("a/b.nxs", "s.json", WriterState.IDLE, "plain file name"),
    ("a.nxs", "", WriterState.IDLE, "no nexus_structure"),
    ("a.nxs", "missing.json", WriterState.IDLE, "cannot read"),
    ("a.nxs", "bad.json", WriterState.IDLE, "not valid JSON"),
    ("a.nxs", "s.json", WriterState.WRITING, "busy"),
    ("a.nxs", "s.json", WriterState.UNAVAILABLE, "not running"),
])
def test_refusals_send_nothing(job, filename, structure, state, message):
    (job.structure.parent / "bad.json").write_text("{nope")
    job.state["now"] = state
    path = str(job.structure.parent / structure) if structure else ""
    with pytest.raises(JobRefused, match=message):
        job.start(filename, path)
    assert job.producer.sent == [] and job.job_id == ""


def test_only_files_in_the_config_folder_are_read(job, tmp_path):
    """A put cannot make the IOC read any file it can, block on a FIFO or read forever."""
    import os

    outside = tmp_path.parent / "secret.json"
    outside.write_text("{}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    (tmp_path / "link.json").symlink_to(outside)
    for path, message in ((str(outside), "config folder"), ("../secret.json", "config folder"),
                          ("link.json", "config folder"), ("/dev/zero", "config folder"),
                          (str(fifo), "not a file"), ("big.json", "MiB")):
        with pytest.raises(JobRefused, match=message):
            job.start("a.nxs", path)
    assert job.producer.sent == []
    assert job.start("a.nxs", "s.json")  # a name in the folder
