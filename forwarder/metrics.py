"""The forwarder's Prometheus metrics, read from its own counters at each scrape. Names the
ESS forwarder uses are kept (`pvs_subscribed`, `processing_errors`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from datastream.metrics import counter, gauge

if TYPE_CHECKING:
    from forwarder.service import ForwarderService

log = logging.getLogger(__name__)


class ProducerLatency:
    """From librdkafka's statistics (every 5 s, on the producer's poll thread): how long a
    message waits in the producer's queue and the broker's round trip, p99 over the
    brokers. With the arrival histogram this gives the EPICS-to-delivery latency, without a
    delivery report per message (a tenth of the forwarder's time at 30,000 updates/s)."""

    def __init__(self) -> None:
        self.queue_p99_s = 0.0
        self.rtt_p99_s = 0.0

    def on_stats(self, text: str) -> None:
        try:
            brokers = [b for b in json.loads(text).get("brokers", {}).values()
                       if b.get("nodeid", -1) >= 0]
            self.queue_p99_s = max((b["int_latency"]["p99"] for b in brokers), default=0) / 1e6
            self.rtt_p99_s = max((b["rtt"]["p99"] for b in brokers), default=0) / 1e6
        except (ValueError, KeyError, TypeError) as exc:
            log.debug("producer statistics not read: %s", exc)


def collect(service: ForwarderService) -> Iterable[Metric]:
    forwarding = service.forwarding
    subscribed, connected, streams = forwarding.pv_counts()
    counters = forwarding.counters()
    sent = service.publisher.counters()
    yield gauge("pvs_subscribed", "PVs subscribed (CA and PVA)", subscribed)
    yield gauge("forwarder_pvs_connected", "subscribed PVs connected now", connected)
    yield gauge("forwarder_streams", "streams forwarded (a PV to several topics or schemas "
                "counts once each)", streams)
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
    yield counter("forwarder_units_sent", "un00 messages sent: a PV's units at connect and "
                  "when they change, once per stream", counters.units_sent)
    yield counter("processing_errors", "updates that could not be serialised",
                  counters.serialise_errors)
    yield counter("forwarder_config_commands", "messages on the config topic",
                  service.config_commands)
    yield counter("forwarder_config_errors", "config messages or streams refused",
                  service.config_errors)
    yield gauge("forwarder_producer_queue_latency_seconds", "p99 wait in the Kafka "
                "producer's queue (librdkafka, last 5 s)", service.producer_latency.queue_p99_s)
    yield gauge("forwarder_broker_rtt_seconds", "p99 round trip of produce requests to the "
                "brokers (librdkafka, last 5 s)", service.producer_latency.rtt_p99_s)
    yield forwarding.latency_copy().family(
        "forwarder_update_latency_seconds",
        "EPICS timestamp of an update to its arrival at the forwarder")
