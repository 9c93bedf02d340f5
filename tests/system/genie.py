"""A genie-style client, as an instrument scientist's script drives a run (pyepics, real libca)."""

from __future__ import annotations

import time

import epics


class Genie:
    def __init__(self, prefix: str) -> None:
        self.p = prefix

    # use_monitor=False: pyepics' cached monitor value may lag behind a put that just completed
    def get(self, suffix: str, **kwargs):
        return epics.caget(self.p + suffix, timeout=5, use_monitor=False, **kwargs)

    def text(self, suffix: str) -> str:
        return epics.caget(self.p + suffix, as_string=True, timeout=5, use_monitor=False)

    def put(self, suffix: str, value) -> None:
        assert epics.caput(self.p + suffix, value, wait=True, timeout=30) == 1, suffix

    def change_title(self, title: str) -> None:
        self.put("DAE:TITLE:SP", title)

    def waitfor_runstate(self, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.text("DAE:RUNSTATE") != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"run state {self.text('DAE:RUNSTATE')}, not {state}; "
                                     f"ERRMSGS: {self.text('DAE:ERRMSGS')}")
            time.sleep(0.1)

    def begin(self) -> None:
        self.put("DAE:BEGINRUN", "1")  # the string "1", as the IBEX GUI writes it
        self.waitfor_runstate("RUNNING")

    def end(self) -> None:
        self.put("DAE:ENDRUN", 1)
        self.waitfor_runstate("SETUP", timeout=60)
