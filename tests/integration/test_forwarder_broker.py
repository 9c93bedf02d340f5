"""The forwarder against a broker of its own: over SASL (PLAIN and SCRAM) and TLS, and while
that broker goes away and comes back (bounded buffering, every drop counted)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import KafkaException

from datastream.instrument import InstrumentConfig
from datastream.kafka_client import KafkaSettings, make_admin
from datastream.schemas import schema_id
from datastream.schemas.f142 import deserialise_f142
from datastream.topics import InstrumentTopics
from forwarder.options import ForwarderOptions
from forwarder.service import ForwarderService
from launcher.broker import embedded
from launcher.topic_ensure import ensure_topics
from tests.conftest import EPICS_PORTS, free_port, serve_db, wait_until
from tests.integration.conftest import read_all

pytestmark = pytest.mark.integration

DB = """
record(calc, "$(P)COUNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "$(P)COUNT") }
record(waveform, "$(P)BIG") {
    field(FTVL, "DOUBLE") field(NELM, "2000000") field(SCAN, ".5 second") }
"""
USER, PASSWORD = "alice", "alice-secret"
KEYSTORE_PASSWORD = "keystore-secret"


@dataclass(frozen=True)
class Tls:
    broker_keystore: Path
    broker_certificate: Path
    client_keystore: Path
    truststore: Path  # the broker's: it admits the client's certificate


@pytest.fixture(scope="module")
def broker_tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    broker_keystore, broker_certificate = embedded.self_signed_keystore(
        directory, KEYSTORE_PASSWORD, "broker")
    client_keystore, client_certificate = embedded.self_signed_keystore(
        directory, KEYSTORE_PASSWORD, "forwarder")
    truststore = embedded.truststore(directory / "trusted.p12", KEYSTORE_PASSWORD,
                                     [client_certificate])
    return Tls(broker_keystore, broker_certificate, client_keystore, truststore)


@pytest.fixture(scope="module")
def broker(tmp_path_factory, broker_tls):
    config = embedded.BrokerConfig(tmp_path_factory.mktemp("own-kafka"), port=free_port(),
                                   controller_port=free_port(), heap="512m",
                                   sasl_users=((USER, PASSWORD),), sasl_port=free_port(),
                                   ssl_port=free_port(), ssl_keystore=broker_tls.broker_keystore,
                                   ssl_keystore_password=KEYSTORE_PASSWORD,
                                   ssl_truststore=broker_tls.truststore)
    embedded.start(config)
    yield config
    embedded.stop(config)


@pytest.fixture(scope="module")
def counter_ioc(tmp_path_factory):
    ioc = serve_db(tmp_path_factory.mktemp("counter-ioc"), DB, "TE:BRK:",
                   EPICS_PORTS.run_control_ca, "TE:BRK:COUNT")
    yield ioc
    ioc.stop()


def _sasl(broker, mechanism, password=PASSWORD):
    return KafkaSettings(broker.sasl_bootstrap, "SASL_PLAINTEXT", mechanism, USER, password)


def _instrument(kafka, name, tmp_path):
    topics = InstrumentTopics(name)
    ensure_topics(kafka, topics)
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"streams": [
        {"channel": "TE:BRK:COUNT", "protocol": "ca", "schema": "f142", "periodic": False}]}))
    return replace(InstrumentConfig(name=name, prefix="TE:BRK:"), streams_file=streams), topics


class Running:
    def __init__(self, service):
        self.service = service
        self.stop = threading.Event()
        self.thread = threading.Thread(target=service.serve, args=(self.stop,))

    def __enter__(self):
        self.service.start()
        self.thread.start()
        return self.service

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        self.service.close()


def _counts(kafka, topic, read_s: float = 1.0):
    """The counter's values on the topic; `read_s` bounds the read, which must get past the
    16 MB waveforms at the topic's start (under load 1 s did not)."""
    return [int(deserialise_f142(m.value()).value) for m in read_all(kafka, topic, timeout=read_s)
            if m.key() == b"TE:BRK:COUNT" and schema_id(m.value()) == "f142"]


def test_sasl_plain_and_scram(broker, counter_ioc, tmp_path):
    with pytest.raises(KafkaException):
        make_admin(_sasl(broker, "PLAIN", "wrong")).list_topics(timeout=5)
    scram = _sasl(broker, "SCRAM-SHA-256")
    config, topics = _instrument(scram, "SASL", tmp_path)
    options = ForwarderOptions(run_log=False, use_storage=False)
    with Running(ForwarderService(config, _sasl(broker, "PLAIN"), options)):
        reader = _sasl(broker, "SCRAM-SHA-512")
        wait_until(lambda: len(_counts(reader, topics.sample_env)) >= 5, 30,
                   "updates forwarded over SASL PLAIN, read over SCRAM-SHA-512")


def test_mutual_tls(broker, broker_tls, counter_ioc, tmp_path):
    tls = KafkaSettings(broker.ssl_bootstrap, "SSL", ssl_cafile=str(broker_tls.broker_certificate),
                        ssl_keystore=str(broker_tls.client_keystore),
                        ssl_keystore_password=KEYSTORE_PASSWORD)
    for refused in (replace(tls, ssl_keystore=None),  # the broker wants a client certificate
                    replace(tls, ssl_cafile=None)):  # no known authority signed the broker's
        with pytest.raises(KafkaException):
            make_admin(refused).list_topics(timeout=5)
    config, topics = _instrument(tls, "TLS", tmp_path)
    options = ForwarderOptions(run_log=False, use_storage=False)
    with Running(ForwarderService(config, tls, options)):
        wait_until(lambda: len(_counts(tls, topics.sample_env)) >= 5, 30,
                   "updates forwarded and read over TLS")


def test_a_broker_outage_buffers_to_the_bound_and_counts_the_rest(broker, counter_ioc,
                                                                  tmp_path):
    kafka = KafkaSettings(broker.bootstrap)
    config, topics = _instrument(kafka, "OUTAGE", tmp_path)
    options = ForwarderOptions(run_log=False, use_storage=False, queue_max_messages=20,
                               status_interval_s=0.5)
    with Running(ForwarderService(config, kafka, options)) as service:
        wait_until(lambda: len(_counts(kafka, topics.sample_env)) >= 5, 30, "first updates")
        embedded.stop(broker)
        before = service.forwarding.counters().updates
        time.sleep(8)  # ~80 updates at 10 Hz, four times the bound
        during = service.forwarding.counters().updates - before
        assert during >= 50  # EPICS callbacks went on: never blocked by the dead broker
        dropped = service.publisher.counters().dropped_full
        assert dropped >= 30
        embedded.start(broker)
        wait_until(lambda: service.publisher.counters().delivered
                   >= service.publisher.counters().queued - 2, 60,
                   "the buffered updates delivered after the broker returned")
        time.sleep(1)
    counters = service.forwarding.counters()
    sent = service.publisher.counters()
    values = _counts(kafka, topics.sample_env)
    assert values == sorted(set(values))  # in order, none twice
    assert len(values) == counters.forwarded
    assert counters.updates == counters.forwarded + sent.dropped_full
    # the gap in the values is exactly the updates dropped at the bound
    assert values[-1] - values[0] + 1 - len(values) == pytest.approx(sent.dropped_full, abs=2)


def test_a_huge_waveform_does_not_delay_the_other_pvs(counter_ioc, kafka, tmp_path):
    config, topics = _instrument(kafka, f"BIG{time.monotonic_ns() % 10**6}", tmp_path)
    streams = tmp_path / "big.json"
    streams.write_text(json.dumps({"streams": [
        {"channel": "TE:BRK:COUNT", "protocol": "ca", "schema": "f142", "periodic": False},
        {"channel": "TE:BRK:BIG", "protocol": "pva", "schema": "f144", "periodic": False},
        {"channel": "TE:BRK:BIG", "protocol": "ca", "schema": "f142", "periodic": False,
         "name": "big_ca"}]}))
    config = replace(config, streams_file=streams)
    from p4p.client.thread import Context

    with Context("pva") as ctx:
        ctx.put("TE:BRK:BIG", np.arange(2_000_000, dtype=np.float64), timeout=10)
    options = ForwarderOptions(run_log=False, use_storage=False)
    with Running(ForwarderService(config, kafka, options)) as service:
        wait_until(lambda: len(_counts(kafka, topics.sample_env, read_s=10)) >= 60, 30,
                   "six seconds of counter updates beside 16 MB waveforms")
        counters = service.forwarding.counters()
    values = _counts(kafka, topics.sample_env, read_s=10)
    assert values[-1] - values[0] + 1 == len(values)  # every counter update, in order
    sizes = [len(m.value()) for m in read_all(kafka, topics.sample_env, timeout=10)
             if m.key() == b"TE:BRK:BIG" and schema_id(m.value()) in ("f142", "f144")]
    assert len(sizes) >= 4 and min(sizes) > 16_000_000  # the whole waveform, over CA and PVA
    assert counters.serialise_errors == 0
