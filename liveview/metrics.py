"""The live view's Prometheus metrics, read at each scrape."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from datastream.metrics import counter, gauge

if TYPE_CHECKING:
    from liveview.service import LiveView


def collect(view: LiveView) -> Iterable[Metric]:
    snapshot = view.histogram.snapshot()
    last = int(snapshot["last_pulse_ns"])
    yield counter("liveview_events_binned", "events of the followed runs taken into the "
                  "histogram", view.histogram.events_ever)
    yield gauge("liveview_lag_seconds", "now less the newest pulse binned (0 without a run)",
                max(0.0, time.time() - last / 1e9) if last else 0.0)
    yield gauge("liveview_run_number", "the run followed (0: none yet)",
                int(view.run_name) if view.run_name.isdigit() else 0)
    yield counter("liveview_skipped_messages", "messages that could not be read",
                  view.malformed)
    yield gauge("liveview_skipped_events", "events of the run counted but not binned: load "
                "shed while the lag was past max_lag_s", int(snapshot["skipped"]))
    yield gauge("liveview_outside_events", "the detector's events of the run not binned: "
                "outside its pixels, time channels or the periods binned (max_periods)",
                int(snapshot["outside"]))
    yield gauge("liveview_monitor_outside_events", "beam monitors' events of the run not "
                "binned: outside the time channels or the periods binned",
                int(snapshot["monitor_outside"]))
    yield gauge("liveview_shedding", "1 while binning is shed", int(view.shedder.shedding))
    yield gauge("liveview_consumer_lag_messages", "event messages still to read: behind the "
                "end of the events topic", view.consumer_lag)
