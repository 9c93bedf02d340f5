"""`datastream forwarder`: forward the configured PVs until stopped, with x5f2 status.

Streams come from the config file, the config topic (fc00/rf5k, kept in the storage topic),
the IBEX block list and the DAE run log; each owns its own set (forwarder.stream_set).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace

from streaming_data_types.status_x5f2 import serialise_x5f2

import datastream
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_admin, make_producer
from datastream.metrics import Health, serve_metrics
from datastream.schemas import MalformedMessage
from datastream.streams import Stream, runlog_streams
from datastream.topic_listener import TopicListener
from forwarder.ca_source import CaSource
from forwarder.config_update import ConfigCommand, apply_command, decode_command
from forwarder.forwarding import Forwarding
from forwarder.ibex_blocks import BlocksWatcher, block_streams
from forwarder.metrics import ProducerLatency, collect
from forwarder.options import ForwarderOptions
from forwarder.publisher import Publisher
from forwarder.pva_source import PvaSource
from forwarder.source import MonitorSource
from forwarder.storage import Storage, read_stored
from forwarder.stream_set import StreamSet
from forwarder.update import Connection

log = logging.getLogger(__name__)

# owners of streams (forwarder.stream_set)
FILE, TOPIC, BLOCKS, RUN_LOG = "file", "topic", "blocks", "runlog"


class ForwarderService:
    def __init__(self, config: InstrumentConfig, kafka: KafkaSettings,
                 options: ForwarderOptions) -> None:
        self.config = config
        self.kafka = kafka
        self.options = options.resolved(config)
        self.service_id = f"forwarder-{config.name}-{socket.gethostname()}-{os.getpid()}"
        self.stream_set = StreamSet()
        self.producer_latency = ProducerLatency()
        self.publisher = Publisher(make_producer(
            kafka, queue_buffering_max_messages=self.options.queue_max_messages,
            queue_buffering_max_kbytes=self.options.queue_max_kbytes,
            delivery_report_only_error=True,
            enable_idempotence=self.options.idempotent, acks="all",
            stats_cb=self.producer_latency.on_stats, statistics_interval_ms=5000))
        # both sources report every connection's units (un00, as ISIS's forwarder sends)
        self.forwarding = Forwarding([], self.publisher, self.service_id, units_reported=True)
        self.sources: dict[str, MonitorSource] = {
            "ca": CaSource(self.forwarding.on_update, self.forwarding.on_connection,
                           self.forwarding.on_units),
            "pva": PvaSource(self.forwarding.on_update, self.forwarding.on_connection,
                             self.forwarding.on_units),
        }
        self._apply_lock = threading.Lock()
        self.changed = threading.Event()
        self.config_commands = 0
        self.config_errors = 0
        self.last_config_error = ""
        self._storage = (Storage(kafka, self.options.storage_topic)
                         if self.options.use_storage else None)
        self._listener = TopicListener(kafka, self.options.config_topic, self.on_config_message)
        self._blocks = (BlocksWatcher(config.prefix, self.on_blocks)
                        if self.options.ibex_blocks else None)
        self.health = Health(self.options.status_interval_s, kafka,
                             [self.options.config_topic, self.options.status_topic])

    # -- the stream set --
    def apply(self, owner: str, streams: dict[Stream, bool]) -> None:
        with self._apply_lock:
            if not self.stream_set.set(owner, streams):
                return
            change = self.forwarding.set_streams(self.stream_set.merged())
            for protocol, source in self.sources.items():
                source.remove([c for p, c in change.closed if p == protocol])
                source.add([c for p, c in change.opened if p == protocol])
        if change:
            log.info("streams: %d opened, %d closed; %d forwarded", len(change.opened),
                     len(change.closed), len(self.forwarding.streams()))
        self.changed.set()

    def on_config_message(self, payload: bytes) -> None:
        self.config_commands += 1
        try:
            command = decode_command(payload)
        except MalformedMessage as exc:
            self.config_errors += 1
            log.warning("config message ignored: %s", exc)
            return
        command = self._without_missing_topics(command)
        for reason in command.rejected:
            self.config_errors += 1
            self.last_config_error = reason
            log.warning("config stream ignored: %s", reason)
        updated = apply_command(self.stream_set.owned(TOPIC), command)
        log.info("config %s: %d streams from the config topic", command.action.name,
                 len(updated))
        self.apply(TOPIC, updated)
        if self._storage is not None:
            self._storage.save(updated)

    def _without_missing_topics(self, command: ConfigCommand) -> ConfigCommand:
        """Streams to a topic the cluster does not have are rejected: production clusters do
        not create topics on first use, and every update would fail to deliver."""
        if not command.streams:
            return command
        try:
            listed = make_admin(self.kafka).list_topics(timeout=5).topics
        except Exception as exc:  # cannot tell: take the streams, delivery reports will tell
            log.warning("cannot list the cluster's topics to check a config: %s", exc)
            return command
        missing = {s for s in command.streams
                   if s.topic not in listed or listed[s.topic].error is not None}
        if not missing:
            return command
        return replace(command, streams={s: p for s, p in command.streams.items()
                                         if s not in missing},
                       rejected=command.rejected + tuple(
                           f"{s.channel}: topic {s.topic!r} does not exist on the cluster"
                           for s in missing))

    def on_blocks(self, names: list[str]) -> None:
        self.apply(BLOCKS, block_streams(self.config.prefix, names,
                                         self.config.topics.sample_env))

    # -- status --
    def status_json(self) -> str:
        states = self.forwarding.connection_states()
        counters = self.forwarding.counters()
        sent = self.publisher.counters()
        return json.dumps({
            "streams": [
                {"channel_name": s.channel, "protocol": s.protocol, "schema": s.schema,
                 "output_topic": s.topic,
                 "connected": states.get((s.protocol, s.channel)) is Connection.CONNECTED}
                for s in self.forwarding.streams()
            ],
            "updates": counters.updates,
            "forwarded": counters.forwarded,
            "dropped_old": counters.dropped_old,
            "dropped_bad_time": counters.dropped_bad_time,
            "serialise_errors": counters.serialise_errors,
            "dropped_queue_full": sent.dropped_full,
            "dropped_epics_backlog": sum(s.dropped for s in self.sources.values()),
            "delivery_errors": sent.delivery_errors,
            "config_commands": self.config_commands,
            "config_errors": self.config_errors,
            "config_last_error": self.last_config_error,
        })

    def _send_status(self, producer: object) -> None:
        payload = serialise_x5f2("datastream-forwarder", datastream.__version__,
                                 self.service_id, socket.gethostname(), os.getpid(),
                                 int(self.options.status_interval_s * 1000), self.status_json())
        try:
            producer.produce(self.options.status_topic, payload,
                             timestamp=time.time_ns() // 1_000_000)
            producer.poll(0)
            self.health.status_sent()
        except BufferError:
            log.warning("status message dropped: producer queue full")

    # -- life --
    def start(self) -> None:
        self.publisher.start()
        self.apply(FILE, {s.stream: s.periodic for s in self.config.streams()})
        if self._storage is not None:
            stored = read_stored(self.kafka, self.options.storage_topic)
            if stored is not None:
                log.info("resuming %d streams from %s", len(stored), self.options.storage_topic)
                self.apply(TOPIC, stored)
        if self.options.run_log:
            self.apply(RUN_LOG, {s.stream: s.periodic for s in runlog_streams(
                self.config.prefix, self.config.topics.run_log)})
        if self._blocks is not None:
            self._blocks.start()
        self._listener.start()
        log.info("forwarding %d streams of %s to Kafka at %s; config on %s",
                 len(self.forwarding.streams()), self.config.name, self.kafka.bootstrap,
                 self.options.config_topic)

    def serve(self, stop: threading.Event) -> None:
        status_producer = make_producer(self.kafka)
        last_periodic = last_status = time.monotonic()
        try:
            while not stop.is_set():
                self.changed.wait(0.25)
                self.health.tick()
                self.forwarding.release_overdue()
                now = time.monotonic()
                if now - last_periodic >= self.options.periodic_interval_s:
                    self.forwarding.republish()
                    last_periodic = now
                if self.changed.is_set() or now - last_status >= self.options.status_interval_s:
                    self.changed.clear()
                    last_status = now
                    self._send_status(status_producer)
        finally:
            status_producer.flush(5)

    def close(self) -> None:
        self._listener.close()
        if self._blocks is not None:
            self._blocks.close()
        for source in self.sources.values():
            source.close()
        self.publisher.close()


def run(config: InstrumentConfig, kafka: KafkaSettings, stop: threading.Event | None = None,
        options: ForwarderOptions | None = None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = ForwarderService(config, kafka, options or ForwarderOptions())
    metrics = serve_metrics(service.options.metrics_port or None, "forwarder", config.name,
                            service.health, lambda: collect(service))
    service.start()
    try:
        service.serve(stop)
    finally:
        if metrics is not None:
            metrics.close()
        service.close()
