"""Run control's DAE settings (taken in SETUP only, the DAE's periods with them, kept on disk)
and ISISDAE's run numbers (an aborted run's number is the next run's; RUNNUMBER shows the
next run in SETUP)."""

from __future__ import annotations

import dataclasses

import pytest
from streaming_data_types.run_start_pl72 import deserialise_pl72
from streaming_data_types.run_stop_6s4t import deserialise_6s4t

from datastream.run_window import ABORT_PREFIX
from ioc.dae import PeriodPlan
from ioc.dae_settings import DaeConfig, DaeConfigStore, Periods, PeriodSlot, Tcb, TimeRow
from ioc.labview_xml import SettingsError
from ioc.runstate import CommandRefused, RunState
from tests.unit.test_run_control import control  # noqa: F401  (the fixture)


class PeriodsDae:
    """The fake DAE of test_run_control, taking periods as the simulated one does."""

    def __init__(self, dae) -> None:
        self.dae, self.plans = dae, []

    def __getattr__(self, name):
        return getattr(self.dae, name)

    def set_periods(self, plan: PeriodPlan) -> None:
        if plan.number > 4:
            raise ValueError("at most 4 periods here")
        self.plans.append(plan)


def test_settings_are_taken_in_setup_kept_on_disk_and_given_to_the_dae(control, tmp_path):  # noqa: F811
    control.dae = PeriodsDae(control.dae)
    control.config_store = DaeConfigStore(tmp_path / "dae.json")
    config = dataclasses.replace(control.dae_config, tcb=Tcb((TimeRow(10, 1010, 10, 1),)),
                                 periods=Periods(soft_periods=3))
    control.configure(config)
    assert control.dae.plans == [PeriodPlan(3)]
    # the run's pl72 carries the TCB the live view bins it with
    control.begin()
    tcb = deserialise_pl72(control.producer.topics("TST_runInfo")[0].value).metadata
    assert '"channels": 100' in tcb and '"tof_max_ns": 1010000.0' in tcb
    with pytest.raises(CommandRefused):  # not while a run counts
        control.configure(DaeConfig())
    assert control.dae_config == config
    # a new IOC over the same disk has them
    assert DaeConfigStore(tmp_path / "dae.json").load(DaeConfig()).documents() == \
        config.documents()


def test_settings_the_dae_refuses_are_not_kept(control, tmp_path):  # noqa: F811
    control.dae = PeriodsDae(control.dae)
    control.config_store = DaeConfigStore(tmp_path / "dae.json")
    with pytest.raises(ValueError, match="at most 4"):
        control.configure(DaeConfig(periods=Periods(soft_periods=5)))
    assert control.dae_config == DaeConfig() and not (tmp_path / "dae.json").exists()


def test_a_damaged_settings_file_is_said_not_replaced(tmp_path):
    path = tmp_path / "dae.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="unreadable"):
        DaeConfigStore(path).load(DaeConfig())
    path.write_text('{"tcb": "<Cluster><Name>Time Channels</Name>'
                    '<DBL><Name>TR1 Steps 1</Name><Val>nan</Val></DBL></Cluster>"}')
    with pytest.raises(SettingsError, match="TR1 Steps 1"):
        DaeConfigStore(path).load(DaeConfig())


def test_hardware_periods_step_through_their_slots():
    slots = (PeriodSlot(1, 2), PeriodSlot(2, 1), PeriodSlot(1, 1)) + (PeriodSlot(),) * 5
    plan = Periods(period_type=1, slots=slots).plan()
    assert plan.number == 3
    assert [plan.of_frame(k, 0) for k in range(5)] == [
        (0, False), (0, False), (1, True), (2, False), (0, False)]


def test_an_aborted_run_s_number_is_the_next_run_s(control):  # noqa: F811
    assert control.shown_run_number == 1  # SETUP: the next run's
    control.begin()
    assert control.shown_run_number == 1
    control.abort()
    stop = deserialise_6s4t(control.producer.topics("TST_runInfo")[-1].value)
    assert stop.command_id.startswith(ABORT_PREFIX)
    assert control.state is RunState.SETUP and control.shown_run_number == 1
    run = control.begin()
    assert run.run_number == 1
    control.end()
    assert control.state is RunState.ENDING and control.shown_run_number == 1
    control.writer.done[run.job_id] = False  # the file is written
    control.tick()
    assert control.state is RunState.SETUP and control.shown_run_number == 2
