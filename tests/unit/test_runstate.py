import pytest

from ioc.runstate import TRANSITIONS, Command, CommandRefused, RunState, check


def test_isisdae_numbering():
    assert [s.value for s in RunState] == list(range(15))
    assert RunState(1) is RunState.SETUP and RunState(2) is RunState.RUNNING
    assert RunState(6) is RunState.ENDING and RunState(10) is RunState.BEGINNING


@pytest.mark.parametrize(("command", "state"), [
    (Command.BEGIN, RunState.RUNNING), (Command.BEGIN, RunState.PAUSED),
    (Command.BEGIN, RunState.ENDING), (Command.END, RunState.SETUP),
    (Command.PAUSE, RunState.PAUSED), (Command.PAUSE, RunState.SETUP),
    (Command.RESUME, RunState.RUNNING), (Command.ABORT, RunState.SETUP),
])
def test_refused_commands_say_why(command, state):
    with pytest.raises(CommandRefused, match=f"{command.value} refused: run state is {state.name}"):
        check(command, state)


def test_every_command_passes_through_a_transient_state():
    for command, transition in TRANSITIONS.items():
        assert transition.passes_through not in transition.allowed_from, command
        assert check(command, next(iter(transition.allowed_from))) is transition
