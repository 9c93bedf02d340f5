"""The forwarder's Prometheus metrics, read from its own counters at each scrape. Names the
ESS forwarder uses are kept (`pvs_subscribed`, `processing_errors`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from datastream.metrics import counter, gauge
from forwarder.update import Connection

if TYPE_CHECKING:
    from forwarder.service import ForwarderService


def collect(service: ForwarderService) -> Iterable[Metric]:
    forwarding = service.forwarding
    states = forwarding.connection_states()
    subscribed = {(s.protocol, s.channel) for s in forwarding.streams()}
    counters = forwarding.counters()
    sent = service.publisher.counters()
    yield gauge("pvs_subscribed", "PVs subscribed (CA and PVA)", len(subscribed))
    yield gauge("forwarder_pvs_connected", "subscribed PVs connected now",
                sum(1 for sub in subscribed if states.get(sub) is Connection.CONNECTED))
    yield gauge("forwarder_streams", "streams forwarded (a PV to several topics or schemas "
                "counts once each)", len(forwarding.streams()))
    yield counter("forwarder_updates_received", "PV updates received", counters.updates)
    yield counter("forwarder_messages_forwarded", "messages handed to Kafka",
                  counters.forwarded)
    yield counter("forwarder_messages_delivered", "messages the broker acknowledged",
                  sent.delivered)
    yield counter("forwarder_dropped", "updates or messages not forwarded, by cause", {
        ("older_than_last",): counters.dropped_old,
        ("implausible_timestamp",): counters.dropped_bad_time,
        ("producer_queue_full",): sent.dropped_full,
        ("epics_backlog",): sum(s.dropped for s in service.sources.values()),
        ("delivery_failed",): sent.delivery_errors,
    }, labels=["cause"])
    yield counter("processing_errors", "updates that could not be serialised",
                  counters.serialise_errors)
    yield counter("forwarder_config_commands", "messages on the config topic",
                  service.config_commands)
    yield counter("forwarder_config_errors", "config messages or streams refused",
                  service.config_errors)
    yield forwarding.latency_copy().family(
        "forwarder_update_latency_seconds",
        "EPICS timestamp of an update to its message in the Kafka producer's queue")
