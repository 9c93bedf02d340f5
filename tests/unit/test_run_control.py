import json

import pytest
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.streams import LogStream, Stream
from datastream.topics import InstrumentTopics
from ioc.run_control import RunControl, RunControlError
from ioc.run_numbers import RunNumberStore
from ioc.runstate import CommandRefused, RunState
from ioc.simulated_dae import DaeCounters
from tests.fakes import FakeProducer

T0_NS = 1_700_000_000_123_456_789


class FakeDae:
    def __init__(self):
        self.calls = []

    def begin(self, start_ns, paused=False):
        self.calls.append(("begin", start_ns, paused))

    def pause(self, at_ns):
        self.calls.append(("pause", at_ns))

    def resume(self, at_ns):
        self.calls.append(("resume", at_ns))

    def end(self, stop_ns):
        self.calls.append(("end", stop_ns))
        return DaeCounters()

    def counters(self):
        return DaeCounters()


class FakeWriter:
    def __init__(self):
        self.done = {}

    def expect(self, job_id):
        pass

    def finished(self, job_id):
        return self.done.get(job_id)


@pytest.fixture
def control(tmp_path):
    clock = {"ns": T0_NS, "mono": 0.0}
    rc = RunControl(
        instrument="TST", topics=InstrumentTopics("TST"), producer=FakeProducer(),
        dae=FakeDae(), run_numbers=RunNumberStore(tmp_path / "n.txt"), writer=FakeWriter(),
        logs=[LogStream(Stream("TE:TST:T", "ca", "f142", "TST_sampleEnv"), "T", "K")],
        end_timeout_s=5, clock_ns=lambda: clock["ns"], monotonic=lambda: clock["mono"])
    rc.clock = clock
    return rc


def test_begin_sends_pl72_then_counts(control):
    control.settings.title = "my sample"
    control.settings.users = "Ada, Bob"
    run = control.begin()
    assert control.state is RunState.RUNNING
    [sent] = control.producer.topics("TST_runInfo")
    start = deserialise_pl72(sent.value)
    assert start.filename == "TST00000001.nxs" and start.run_name == "00000001"
    assert start.run_name.isdigit()
    assert start.start_time == T0_NS // 1_000_000  # ms
    assert start.control_topic == "TST_runInfo" and start.instrument_name == "TST"
    assert sent.timestamp == start.start_time
    structure = json.loads(start.nexus_structure)
    entry = structure["children"][0]
    assert entry["name"] == "raw_data_1"
    text = json.dumps(structure)
    assert '"my sample"' in text and "TE:TST:T" in text and '"Ada"' in text
    # the DAE counts from exactly the start time the writer was told
    assert control.dae.calls == [("begin", start.start_time * 1_000_000, False)]
    assert run.start_ns == start.start_time * 1_000_000


def test_refused_commands_send_nothing(control):
    with pytest.raises(CommandRefused):
        control.end()
    control.begin()
    with pytest.raises(CommandRefused, match="BEGINRUN refused: run state is RUNNING"):
        control.begin()
    assert len(control.producer.sent) == 1
    assert "BEGINRUN refused" in control.error_message()
    assert control.run.run_number == 1


def test_end_waits_for_the_writer(control):
    run = control.begin()
    control.clock["ns"] += 2_500_000_000
    control.end()
    assert control.state is RunState.ENDING
    stop = deserialise_6s4t(control.producer.topics("TST_runInfo")[-1].value)
    assert stop.job_id == run.job_id and stop.stop_time == (T0_NS + 2_500_000_000) // 1_000_000
    assert control.dae.calls[-1] == ("end", stop.stop_time * 1_000_000)
    control.tick()
    assert control.state is RunState.ENDING
    control.writer.done[run.job_id] = False
    control.tick()
    assert control.state is RunState.SETUP and control.error_message() == ""


def test_end_times_out_with_a_message(control):
    control.begin()
    control.end()
    control.clock["mono"] += 6
    control.tick()
    assert control.state is RunState.SETUP
    assert "did not confirm" in control.error_message()


def test_pause_resume_abort(control):
    control.begin()
    control.pause()
    assert control.state is RunState.PAUSED
    control.resume()
    assert control.state is RunState.RUNNING
    control.abort()
    assert control.state is RunState.SETUP
    assert [c[0] for c in control.dae.calls] == ["begin", "pause", "resume", "end"]


def test_begin_paused(control):
    control.begin(paused=True)
    assert control.state is RunState.PAUSED
    assert control.dae.calls[0][2] is True


def test_a_run_start_that_cannot_be_delivered_never_half_starts(control):
    control.producer.fail_with = "broker down"
    with pytest.raises(RunControlError, match="run start not sent"):
        control.begin()
    assert control.state is RunState.SETUP
    assert control.dae.calls == []  # nothing counted
    control.producer.fail_with = None
    assert control.begin().run_number == 2  # the failed number is never reused
