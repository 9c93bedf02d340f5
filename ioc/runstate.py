"""ISISDAE run states and which command is allowed in which state, as a table."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class RunState(IntEnum):
    """ISISDAE RUNSTATE numbering (the mbbi index IBEX shows)."""

    PROCESSING = 0
    SETUP = 1
    RUNNING = 2
    PAUSED = 3
    WAITING = 4
    VETOING = 5
    ENDING = 6
    SAVING = 7
    RESUMING = 8
    PAUSING = 9
    BEGINNING = 10
    ABORTING = 11
    UPDATING = 12
    STORING = 13
    CHANGING = 14


class Command(Enum):
    BEGIN = "BEGINRUN"
    END = "ENDRUN"
    PAUSE = "PAUSERUN"
    RESUME = "RESUMERUN"
    ABORT = "ABORTRUN"


@dataclass(frozen=True)
class Transition:
    allowed_from: frozenset[RunState]
    passes_through: RunState
    ends_in: RunState


TRANSITIONS: dict[Command, Transition] = {
    Command.BEGIN: Transition(frozenset({RunState.SETUP}), RunState.BEGINNING, RunState.RUNNING),
    # ENDRUN leaves the IOC in ENDING until the file writer reports the file closed
    Command.END: Transition(frozenset({RunState.RUNNING, RunState.PAUSED}), RunState.ENDING,
                            RunState.SETUP),
    Command.PAUSE: Transition(frozenset({RunState.RUNNING}), RunState.PAUSING, RunState.PAUSED),
    Command.RESUME: Transition(frozenset({RunState.PAUSED}), RunState.RESUMING, RunState.RUNNING),
    Command.ABORT: Transition(frozenset({RunState.RUNNING, RunState.PAUSED}), RunState.ABORTING,
                              RunState.SETUP),
}


class CommandRefused(Exception):
    """A run-control command that the current state does not allow; nothing was done."""


def check(command: Command, state: RunState) -> Transition:
    transition = TRANSITIONS[command]
    if state not in transition.allowed_from:
        allowed = " or ".join(sorted(s.name for s in transition.allowed_from))
        raise CommandRefused(
            f"{command.value} refused: run state is {state.name}, must be {allowed}")
    return transition
