"""Kafka ACLs on a real broker (SASL/SCRAM, StandardAuthorizer), one principal per service:
only run control starts runs and writes events; the file writer reads and writes only its
reports; anybody without an ACL, anonymous or with a wrong password, is refused. No password
is ever on a command line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import KafkaException

from datastream.instrument import InstrumentConfig, write_config
from datastream.kafka_client import DeliveryError, KafkaSettings, deliver, make_admin, make_producer
from datastream.schemas import schema_id
from datastream.topics import InstrumentTopics
from launcher.broker import embedded
from launcher.kafka_acls import apply_acls, instrument_acls
from launcher.topic_ensure import ensure_topics
from tests.conftest import free_port, wait_until
from tests.faults.conftest import MS, FrameSource, check_events_file, stop_as_a_dae
from tests.integration.conftest import read_all, writer_process
from tests.integration.test_filewriter_kafka import start_run, wait_wrdn

pytestmark = pytest.mark.integration

USERS = {name: secrets.token_urlsafe(16) for name in ("runcontrol", "filewriter", "forwarder")}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    config = embedded.BrokerConfig(
        tmp_path_factory.mktemp("acl-kafka"), port=free_port(), controller_port=free_port(),
        heap="512m", admin_password=secrets.token_urlsafe(16),
        sasl_users=tuple(USERS.items()))
    embedded.start(config)
    try:
        yield config
    finally:
        embedded.stop(config)


def as_user(config, user: str, password: str | None = None) -> KafkaSettings:
    return KafkaSettings(config.bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="SCRAM-SHA-256", sasl_username=user,
                         sasl_password=password or USERS[user])


def admin(config) -> KafkaSettings:
    return KafkaSettings(config.bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="PLAIN", sasl_username="admin",
                         sasl_password=config.admin_password)


def test_only_run_control_starts_runs_and_the_writer_writes_only_its_reports(secured,
                                                                             tmp_path):
    topics = InstrumentTopics(f"ACL{uuid.uuid4().hex[:4].upper()}")
    root = admin(secured)
    ensure_topics(root, topics)
    apply_acls(root, instrument_acls(topics, writer_group=f"fw-{topics.instrument}"))
    run_control, forwarder = as_user(secured, "runcontrol"), as_user(secured, "forwarder")
    writer_args = ("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism",
                   "SCRAM-SHA-256", "--sasl-username", "filewriter", "--reports-apart")
    with writer_process(as_user(secured, "filewriter"), topics, tmp_path, wait_ready=False,
                        extra_args=writer_args,
                        env={"DATASTREAM_SASL_PASSWORD": USERS["filewriter"]}) as writer:
        assert USERS["filewriter"] not in " ".join(writer.args)  # never on a command line
        wait_until(lambda: any(schema_id(m.value()) == "x5f2" for m in read_all(
            root, topics.writer_status, timeout=1)), 60, "the writer's first heartbeat")

        # a run start from a principal without the right: refused, no job
        intruder = str(uuid.uuid4())
        with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
            start_run(make_producer(forwarder), topics, time.time_ns() // MS, intruder,
                      "INTRUDER.nxs")
        # the writer may read the events but not write them
        with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
            deliver(make_producer(as_user(secured, "filewriter")), topics.events, b"x")

        frames = FrameSource(run_control, topics.events, events=50).start()
        producer = make_producer(run_control)
        job_id = str(uuid.uuid4())
        start_ms = time.time_ns() // MS
        start_run(producer, topics, start_ms, job_id, "SECURE.nxs")
        time.sleep(1.5)
        stop_ms = stop_as_a_dae(frames, producer, topics.run_info, job_id)
        done = wait_wrdn(root, topics.writer_status, job_id, timeout=60)
        assert not done.error_encountered, done.message
    check_events_file(tmp_path / "SECURE.nxs", frames.events_between(start_ms * MS, stop_ms * MS),
                      distinct_ids=True,
                      explain=lambda ids: frames.explain(ids, start_ms * MS, stop_ms * MS))
    assert not (tmp_path / "INTRUDER.nxs").exists()
    on_run_info = [schema_id(m.value()) for m in read_all(root, topics.run_info, timeout=2)]
    assert on_run_info == ["pl72", "6s4t"]  # the writer wrote nothing there
    log = (tmp_path / "writer.log").read_text()
    assert USERS["filewriter"] not in log and intruder not in log


@pytest.mark.parametrize("who", ["anonymous", "wrong password"])
def test_a_client_without_credentials_is_refused(secured, who):
    settings = (KafkaSettings(secured.bootstrap) if who == "anonymous"
                else as_user(secured, "runcontrol", password="not-it"))
    with pytest.raises(KafkaException):
        make_admin(settings).list_topics(timeout=5)


def test_topics_ensure_and_doctor_over_sasl(secured, tmp_path):
    """The operator's tools on a secured cluster: ensure (twice: the second changes
    nothing) and doctor, logged in as the admin, the password from the environment."""
    topics = InstrumentTopics(f"OPS{uuid.uuid4().hex[:4].upper()}")
    assert ensure_topics(admin(secured), topics).create
    assert not ensure_topics(admin(secured), topics).changes
    config = write_config(InstrumentConfig(name=topics.instrument, data_dir=tmp_path),
                          tmp_path / "config.toml")
    out = subprocess.run(
        [sys.executable, "-m", "launcher", "doctor", "--config", str(config),
         "--broker", secured.bootstrap, "--security-protocol", "SASL_PLAINTEXT",
         "--sasl-mechanism", "PLAIN", "--sasl-username", "admin", "--service",
         "none=127.0.0.1:1"], capture_output=True, text=True, timeout=120,
        env=os.environ | {"DATASTREAM_SASL_PASSWORD": secured.admin_password})
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [
        ["OK", "broker"], ["OK", "topics"], ["OK", "clock"]], out.stdout + out.stderr
    anonymous = subprocess.run(
        [sys.executable, "-m", "launcher", "doctor", "--config", str(config),
         "--broker", secured.bootstrap, "--service", "none=127.0.0.1:1"],
        capture_output=True, text=True, timeout=120)
    assert anonymous.returncode == 1 and anonymous.stdout.startswith("FAIL broker")
