"""The run-control IOC's Prometheus metrics, and its DAE's, read at each scrape."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from datastream.metrics import counter, gauge
from ioc.dae import Dae
from ioc.run_control import RunControl


def collect(control: RunControl, dae: Dae) -> Iterable[Metric]:
    yield gauge("runcontrol_run_state", "RUNSTATE, ISIS numbering (1 SETUP, 2 RUNNING, "
                "3 PAUSED, 6 ENDING, ...)", int(control.state))
    yield gauge("runcontrol_run_number", "the current or last run's number",
                control.run.run_number)
    yield counter("runcontrol_runs_begun", "runs begun by this IOC", control.runs_begun)
    yield counter("runcontrol_runs_ended", "ENDRUN and ABORTRUN accepted, by command",
                  {(k,): v for k, v in control.runs_ended.items()}, labels=["command"])
    c = dae.counters()
    # the DAE's counters are the run's: they start again at BEGINRUN, which Prometheus
    # reads as a counter reset, so rate() stays right across runs
    yield counter("dae_events", "events counted in the current run", c.total_counts)
    yield counter("dae_good_frames", "good frames in the current run", c.good_frames)
    yield counter("dae_raw_frames", "raw frames in the current run", c.raw_frames)
    yield counter("dae_vetoed_frames", "frames vetoed in the current run, by veto",
                  {(veto,): n for veto, n in c.vetoed_frames}, labels=["veto"])
    yield counter("dae_good_uah", "proton charge of the current run's good frames, µAh",
                  c.good_uah)
    yield gauge("dae_count_rate", "events per second over the last second", c.count_rate)
    yield counter("dae_delivery_errors", "frames not delivered: the broker did not take "
                  "them, or they could not be made or sent", c.delivery_errors)
