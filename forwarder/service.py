"""`datastream forwarder`: forward the configured PVs until stopped, with x5f2 status."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time

from streaming_data_types.status_x5f2 import serialise_x5f2

import datastream
from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_producer
from forwarder.ca_source import CaSource
from forwarder.forwarding import Forwarding
from forwarder.publisher import Publisher
from forwarder.pva_source import PvaSource
from forwarder.update import Connection

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 2.0
PERIODIC_INTERVAL_S = 5.0


def status_json(forwarding: Forwarding, publisher: Publisher) -> str:
    states = forwarding.connection_states()
    counters = forwarding.counters()
    sent = publisher.counters()
    return json.dumps({
        "streams": [
            {"channel_name": s.channel, "protocol": s.protocol, "schema": s.schema,
             "output_topic": s.topic,
             "connected": states.get(s.channel) is Connection.CONNECTED}
            for s in forwarding.streams()
        ],
        "updates": counters.updates,
        "forwarded": counters.forwarded,
        "dropped_old": counters.dropped_old,
        "dropped_bad_time": counters.dropped_bad_time,
        "serialise_errors": counters.serialise_errors,
        "dropped_queue_full": sent.dropped_full,
        "delivery_errors": sent.delivery_errors,
    })


def run(config: InstrumentConfig, kafka: KafkaSettings, stop: threading.Event | None = None,
        ) -> None:
    stop = stop or threading.Event()
    log_streams = config.streams()
    streams = [log_stream.stream for log_stream in log_streams]
    service_id = f"forwarder-{config.name}-{socket.gethostname()}-{os.getpid()}"
    # bounded: past this many queued messages updates are dropped and counted, never buffered
    # without limit while the broker is away
    publisher = Publisher(make_producer(kafka, queue_buffering_max_messages=200_000))
    forwarding = Forwarding(streams, publisher, service_id,
                            periodic={s.stream for s in log_streams if s.periodic})
    sources = [
        CaSource(forwarding.channels("ca"), forwarding.on_update, forwarding.on_connection),
        PvaSource(forwarding.channels("pva"), forwarding.on_update, forwarding.on_connection),
    ]
    status_producer = make_producer(kafka)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    publisher.start()
    for source in sources:
        source.start()
    log.info("forwarding %d streams of %s to Kafka at %s", len(streams), config.name,
             kafka.bootstrap)
    last_periodic = last_status = time.monotonic()
    try:
        while not stop.wait(0.5):
            now = time.monotonic()
            if now - last_periodic >= PERIODIC_INTERVAL_S:
                forwarding.republish()
                last_periodic = now
            if now - last_status < STATUS_INTERVAL_S:
                continue
            last_status = now
            payload = serialise_x5f2("datastream-forwarder", datastream.__version__, service_id,
                                     socket.gethostname(), os.getpid(),
                                     int(STATUS_INTERVAL_S * 1000),
                                     status_json(forwarding, publisher))
            try:
                status_producer.produce(config.topics.forwarder_status, payload,
                                        timestamp=time.time_ns() // 1_000_000)
                status_producer.poll(0)
            except BufferError:
                log.warning("status message dropped: producer queue full")
    finally:
        for source in sources:
            source.close()
        publisher.close()
        status_producer.flush(5)
