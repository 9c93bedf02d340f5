"""The Kafka the playbook deploys is closed: applied for real on this machine (as
test_ansible does, the broker started from its installed unit), every listener, the
controller's included, refuses a client that does not log in (PLAINTEXT, TLS alone, SASL
without credentials); a service's principal may do only what its ACLs allow (the forwarder
cannot start a run); run control's principal produces and consumes; the secrets are in
files only their owner reads, made by the role; a second run changes nothing."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaException

from datastream.kafka_client import (
    DeliveryError,
    KafkaSettings,
    deliver,
    make_admin,
    make_consumer,
    make_producer,
)
from datastream.topics import InstrumentTopics
from launcher.broker import embedded
from launcher.topic_ensure import ensure_topics
from tests.conftest import free_port, wait_until
from tests.deploy.test_ansible import ANSIBLE, Unit, recap, source_archive
from tests.integration.test_embedded_broker_security import (
    OPERATIONS,
    compile_probe,
    plain,
    probe_all,
)
from tests.system_tools import require

pytestmark = pytest.mark.deploy

INSTRUMENT = "SEC"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The kafka_brokers play alone (no instrument host), applied, its broker running."""
    playbook = require("ansible-playbook")
    work = tmp_path_factory.mktemp("ansible-kafka")
    prefix = work / "root"
    variables = {
        "deploy_prefix": str(prefix), "datastream_become": False, "datastream_systemd": False,
        "datastream_user": "root", "kafka_user": "root", "datastream_create_user": False,
        "datastream_archive": str(source_archive(work / "datastream.tar.gz")),
        "datastream_python": str(Path(sys.base_prefix) / "bin" / "python3"),
        "kafka_cluster_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "kafka_listen_host": "127.0.0.1", "kafka_advertised_host": "127.0.0.1",
        "kafka_metrics_host": "127.0.0.1", "kafka_heap": "512m",
        "kafka_java": os.path.realpath(require("java")),
        "kafka_port": free_port(), "kafka_controller_port": free_port(),
        "kafka_metrics_port": free_port(),
        "kafka_credentials_dir": str(work / "credentials"),
        "kafka_acl_instruments": [INSTRUMENT], "kafka_no_log": False}
    (work / "vars.json").write_text(json.dumps(variables))
    local = {"localhost": {"ansible_connection": "local", "kafka_node_id": 1,
                           "ansible_python_interpreter": "/usr/bin/python3"}}
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {
        "kafka_brokers": {"hosts": local}, "instruments": {"hosts": {}},
        "monitoring": {"hosts": {}}}}}))

    def play(*extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [playbook, "-i", str(work / "inventory.yml"), str(ANSIBLE / "site.yml"),
             "-e", f"@{work / 'vars.json'}", *extra], capture_output=True, text=True,
            timeout=900, cwd=ANSIBLE, env=os.environ | {"ANSIBLE_NOCOLOR": "1"})
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        return done

    play("--skip-tags", "topics")  # the broker is not running yet: no systemd here
    kafka = Unit(prefix / "etc" / "systemd" / "system" / "kafka.service")
    kafka.start(work)
    try:
        wait_until(lambda: embedded.port_open(variables["kafka_port"]), 90,
                   "the deployed broker")
        first = play()  # the services' principals and the instrument's ACLs
        assert "changed=0" not in recap(first.stdout)
        yield play, prefix, variables, work
    finally:
        kafka.stop()


def secret(variables: dict, name: str) -> str:
    return (Path(variables["kafka_credentials_dir"]) / name).read_text().split()[0]


def settings(variables: dict, user: str | None = None, password: str | None = None,
             mechanism: str = "SCRAM-SHA-512") -> KafkaSettings:
    ca = str(Path(variables["kafka_credentials_dir"]) / "tls" / "ca.pem")
    bootstrap = f"127.0.0.1:{variables['kafka_port']}"
    if user is None:
        return KafkaSettings(bootstrap, security_protocol="SSL", ssl_cafile=ca)
    return KafkaSettings(bootstrap, security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                         sasl_username=user,
                         sasl_password=password if password is not None
                         else secret(variables, user), ssl_cafile=ca)


def admin_settings(variables: dict) -> KafkaSettings:
    return settings(variables, "admin", mechanism="PLAIN")


@pytest.fixture(scope="module")
def topics(cluster):
    _, _, variables, _ = cluster
    topics = InstrumentTopics(INSTRUMENT)
    ensure_topics(admin_settings(variables), topics)
    return topics


def test_a_second_run_changes_nothing(cluster):
    play, *_ = cluster
    again = play()
    assert "changed=0" in recap(again.stdout), recap(again.stdout)


def test_the_secrets_are_readable_by_their_owner_only(cluster):
    _, prefix, variables, _ = cluster
    conf = prefix / "etc" / "datastream" / "kafka"
    private = [conf / "server.properties", conf / "tls" / "broker.pem",
               *(Path(variables["kafka_credentials_dir"]) / name for name in
                 ("admin", "runcontrol", "filewriter", "forwarder", "liveview")),
               Path(variables["kafka_credentials_dir"]) / "tls" / "ca.key"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    properties = (conf / "server.properties").read_text()
    assert "PLAINTEXT" not in properties.replace("SASL_PLAINTEXT", "")
    assert "allow.everyone.if.no.acl.found=false" in properties
    assert "super.users=User:admin\n" in properties


def test_no_listener_serves_a_client_that_does_not_log_in(cluster, topics, tmp_path):
    _, _, variables, _ = cluster
    # PLAINTEXT, TLS without SASL, SASL without credentials: librdkafka gets nothing
    anonymous = [KafkaSettings(f"127.0.0.1:{variables['kafka_port']}"),
                 settings(variables), settings(variables, "", "", mechanism="PLAIN"),
                 settings(variables, "runcontrol", "not-it")]
    for client in anonymous:
        with pytest.raises(KafkaException):
            make_admin(client).list_topics(timeout=5)
    # nor the Admin API on any listener, the controller's included (Kafka's Java client)
    classes = compile_probe(tmp_path)
    ca = Path(variables["kafka_credentials_dir"]) / "tls" / "ca.pem"
    tls = {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca)}
    clients = [{}, {"security.protocol": "SSL", **tls},
               {**plain("", "", "SASL_SSL"), **tls},
               {**plain("admin", "not-it", "SASL_SSL"), **tls},
               {**plain("runcontrol", secret(variables, "runcontrol"), "SASL_SSL"), **tls}]
    listeners = [("servers", f"127.0.0.1:{variables['kafka_port']}"),
                 ("controllers", f"127.0.0.1:{variables['kafka_controller_port']}")]
    cases = [(kind, address, client, topics.run_info)
             for kind, address in listeners for client in clients]
    for case, answers in zip(cases, probe_all(classes, cases), strict=True):
        assert all(answer.startswith("REFUSED") for answer in answers.values()), \
            (case[:2], case[2].get("sasl.jaas.config", case[2].get("security.protocol")),
             answers)
    admin = make_admin(admin_settings(variables))
    assert topics.run_info in admin.list_topics(timeout=10).topics
    # the admin may, on both listeners (the check that the probe can succeed at all)
    admin_client = {**plain("admin", secret(variables, "admin"), "SASL_SSL"), **tls}
    on_controller = probe_all(classes, [(listeners[1][0], listeners[1][1], admin_client,
                                         "no-such-topic", "blessed")])[0]
    assert on_controller["createAcls"] == "OK", on_controller
    assert set(on_controller) == set(OPERATIONS)


def test_a_service_may_do_what_its_acls_allow_and_nothing_else(cluster, topics):
    _, _, variables, _ = cluster
    with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
        deliver(make_producer(settings(variables, "forwarder")), topics.run_info, b"intruder")
    run_control = settings(variables, "runcontrol")
    marker = f"start-{uuid.uuid4()}".encode()
    deliver(make_producer(run_control), topics.run_info, marker)
    consumer = make_consumer(run_control)
    consumer.subscribe([topics.run_info])
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while marker not in seen and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                seen.append(message.value())
    finally:
        consumer.close()
    assert seen == [marker]  # the forwarder's never got there
