import json
import uuid

from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.status_x5f2 import serialise_x5f2

from ioc.writer_status import WriterState, WriterStatus


def x5f2(**status):
    return serialise_x5f2("fw", "1", "svc", "host", 1, 2000, json.dumps(status))


def test_states_follow_heartbeats_and_finished_files():
    now = [100.0]
    status = WriterStatus(heartbeat_timeout_s=6, clock=lambda: now[0])
    assert status.view().state is WriterState.UNAVAILABLE
    status.on_message(x5f2(state="idle"))
    assert status.view().state is WriterState.IDLE
    job = str(uuid.uuid4())
    status.expect(job)
    status.on_message(x5f2(state="writing", job_id=job, file_being_written="X1.nxs"))
    view = status.view()
    assert (view.state, view.filename, view.job_id) == (WriterState.WRITING, "X1.nxs", job)
    assert status.finished(job) is None
    status.on_message(serialise_wrdn("svc", job, False, "X1.nxs", None, "done"))
    assert status.view().state is WriterState.FINISHED
    assert status.view().last_file == "X1.nxs"
    assert status.finished(job) is False
    now[0] += 7  # no heartbeat for longer than the timeout: the writer is gone
    assert status.view().state is WriterState.UNAVAILABLE
    assert status.view().heartbeat_age_s == 7


def test_refusals_of_other_peoples_commands_are_no_error():
    import datetime as dt

    from streaming_data_types.action_response_answ import (
        ActionOutcome,
        ActionType,
        serialise_answ,
    )
    status = WriterStatus(clock=lambda: 0.0)
    status.on_message(x5f2(state="idle"))
    ours = str(uuid.uuid4())
    status.expect(ours)
    for job in ("", ours):
        status.on_message(serialise_answ("svc", job, "", ActionType.StartJob,
                                         ActionOutcome.Failure, "bad", 400,
                                         dt.datetime.now(dt.UTC)))
        assert status.view().message == "bad"
        assert status.view().state is (WriterState.ERROR if job else WriterState.IDLE)


def test_error_outcome():
    status = WriterStatus(clock=lambda: 0.0)
    status.on_message(x5f2(state="idle"))
    job = str(uuid.uuid4())
    status.expect(job)
    status.on_message(serialise_wrdn("svc", job, True, "X2.nxs", None, "disk full"))
    assert status.view().state is WriterState.ERROR
    assert status.view().message == "disk full"
    assert status.finished(job) is True


def test_other_clients_jobs_change_only_the_message():
    status = WriterStatus(clock=lambda: 0.0)
    status.on_message(x5f2(state="idle"))
    status.on_message(serialise_wrdn("svc", str(uuid.uuid4()), True, "THEIRS.nxs", None, "bad"))
    view = status.view()
    assert (view.state, view.last_file, view.message) == (WriterState.IDLE, "", "bad")


def test_a_run_no_writer_writes_shows_unowned_and_a_stop_no_writer_took_ends_the_wait():
    import datetime as dt

    from streaming_data_types.action_response_answ import (
        ActionOutcome,
        ActionType,
        serialise_answ,
    )

    now = [0.0]
    status = WriterStatus(clock=lambda: now[0])
    status.on_message(x5f2(state="idle"))
    job = str(uuid.uuid4())
    status.expect(job)
    assert status.view(job).state is WriterState.IDLE  # a writer takes a start in a moment
    now[0] += 4
    status.on_message(x5f2(state="idle"))
    assert status.view(job).state is WriterState.UNOWNED
    status.on_message(x5f2(state="writing", job_id=job, file_being_written="R1.nxs"))
    assert status.view(job).state is WriterState.WRITING
    status.on_message(x5f2(state="idle"))  # its writer stopped: the run is not written
    assert status.view(job).state is WriterState.UNOWNED
    assert status.finished(job) is None
    status.on_message(serialise_answ("svc", job, "", ActionType.SetStopTime,
                                     ActionOutcome.Failure, "stop for an unknown job", 400,
                                     dt.datetime.now(dt.UTC)))
    assert status.finished(job) is True


def test_two_writers_one_writing_the_run():
    status = WriterStatus(clock=lambda: 0.0)
    job = str(uuid.uuid4())
    status.expect(job)
    status.on_message(serialise_x5f2("fw", "1", "a", "host", 1, 2000, json.dumps(
        {"state": "writing", "job_id": job, "file_being_written": "R.nxs"})))
    status.on_message(serialise_x5f2("fw", "1", "b", "host", 2, 2000, '{"state": "idle"}'))
    assert status.view(job).state is WriterState.WRITING
    assert status.view(job).filename == "R.nxs"
