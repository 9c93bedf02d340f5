import json

import pytest
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.streams import LogStream, Stream
from datastream.topics import InstrumentTopics
from ioc.dae import DaeCounters
from ioc.run_control import RunControl, RunControlError
from ioc.run_numbers import RunNumberStore
from ioc.runstate import CommandRefused, RunState
from tests.fakes import FakeProducer

T0_NS = 1_700_000_000_123_456_789


class FakeDae:
    periods = 1

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

    def flush(self, timeout):
        return 0

    def restore(self, counters):
        self.calls.append(("restore", counters.total_counts, counters.good_frames))

    def counters(self):
        return DaeCounters()

    def set_vetoes(self, enabled):
        self.vetoes = enabled


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
    # the millisecond after now: a frame made within this millisecond is in the run
    assert stop.job_id == run.job_id
    assert stop.stop_time == (T0_NS + 2_500_000_000) // 1_000_000 + 1
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


def _with_store(control, tmp_path):
    from ioc.run_record import RunRecordStore

    control.record_store = RunRecordStore(tmp_path / "run.json")
    return control


def test_endrun_with_the_broker_down_stays_ending_and_delivers_the_stop_later(control,
                                                                            tmp_path):
    import ioc.run_control as rc

    _with_store(control, tmp_path)
    run = control.begin()
    control.clock["ns"] += 3_000_000_000
    control.producer.fail_with = "broker down"
    rc.RETRY_STOP_S = 0.05
    try:
        control.end()  # accepted: counting stopped, the stop waits for the broker
        assert control.state is RunState.ENDING
        assert "not delivered yet" in control.error_message()
        assert control.run.stop_ns == (T0_NS // 1_000_000 + 1) * 1_000_000 + 3_000_000_000
        assert control.record_store.load().pending is not None
        control.clock["ns"] += 10_000_000_000  # the outage lasts: end_time stays put
        control.tick()
        assert control.state is RunState.ENDING
        control.producer.fail_with = None
        import time

        deadline = time.monotonic() + 5
        # the retry thread records the delivery, then says so: wait for both
        while (control.record_store.load().pending is not None
               or "delivered after" not in control.error_message()) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        stops = [deserialise_6s4t(m.value) for m in control.producer.topics("TST_runInfo")
                 if m.value[4:8] == b"6s4t"]
        assert [s.stop_time for s in stops][-1] == (T0_NS + 3_000_000_000) // 1_000_000 + 1
        assert stops[-1].job_id == run.job_id
        assert "delivered after the broker came back" in control.error_message()
        control.writer.done[run.job_id] = False
        control.tick()
        assert control.state is RunState.SETUP
    finally:
        control.close()
        rc.RETRY_STOP_S = 2.0


def _restarted(control, tmp_path):
    """A new RunControl over the same disk, as a restarted IOC makes it."""
    import dataclasses

    fresh = dataclasses.replace(control, dae=FakeDae(), writer=FakeWriter(),
                                producer=FakeProducer())
    fresh.clock = control.clock
    fresh.restore(lambda run: DaeCounters(total_counts=1234, good_frames=56))
    return fresh


def test_a_restarted_ioc_resumes_the_run_it_had(control, tmp_path):
    _with_store(control, tmp_path)
    run = control.begin()
    again = _restarted(control, tmp_path)
    assert again.state is RunState.RUNNING
    assert (again.run.run_number, again.run.job_id) == (run.run_number, run.job_id)
    assert again.dae.calls == [("restore", 1234, 56), ("resume", T0_NS)]
    assert "resumed after an IOC restart" in again.error_message()
    again.end()  # ENDRUN works on the resumed run
    assert deserialise_6s4t(again.producer.topics("TST_runInfo")[-1].value).job_id == run.job_id

    control.pause()
    paused = _restarted(control, tmp_path)
    assert paused.state is RunState.PAUSED and ("resume", T0_NS) not in paused.dae.calls


def test_a_run_cut_short_while_beginning_is_aborted_with_no_counts(control, tmp_path):
    from ioc.run_record import RunInfo, RunRecord

    _with_store(control, tmp_path)
    control.record_store.save(RunRecord(RunState.BEGINNING, RunInfo(
        7, "0c8f7a0e-3a57-4ad7-a5a1-2f9b5bb0f0a1", "TST00000007.nxs", start_ns=T0_NS)))
    again = _restarted(control, tmp_path)
    assert again.state is RunState.SETUP
    stop = deserialise_6s4t(again.producer.topics("TST_runInfo")[-1].value)
    assert stop.stop_time == T0_NS // 1_000_000  # an empty run
    assert "aborted with no counts" in again.error_message()
