"""The Kafka the playbook deploys is closed: applied for real on this machine (as
test_ansible does, the broker started from its installed unit) for a cluster shared by two
instruments, every listener, the controller's included, refuses a client that does not log
in (PLAINTEXT, TLS alone, SASL without credentials); a service's principal may do only what
its ACLs allow (the forwarder cannot start a run), on its own instrument's topics only (SEC's
file writer is refused SEC2's), with the login its instrument's host was given; run
control's principal produces and consumes; the shared principals of the earlier layout are
removed; the secrets are in files only their owner reads, made by the role; a second run
changes nothing. Last, rotate.yml on the same cluster: a service's and the admin's new
passwords (the old refused), the broker's certificate re-issued by the same CA."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import ssl
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

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
from launcher.kafka_acls import ensure_acls, ensure_scram_users, instrument_acls, logs_in
from launcher.topic_ensure import ensure_topics
from tests.conftest import free_port, wait_until
from tests.deploy.test_ansible import ANSIBLE, Unit, source_archive
from tests.integration.test_embedded_broker_security import (
    OPERATIONS,
    compile_probe,
    plain,
    probe_all,
)
from tests.system_tools import require

pytestmark = pytest.mark.deploy

INSTRUMENT, OTHER = "SEC", "SEC2"  # two instruments on one cluster
SERVICES = ("runcontrol", "filewriter", "forwarder", "liveview")
# the principals of the layout before per-instrument ones, which site.yml removes
SHARED = "filewriter"


@dataclass
class Cluster:
    play: Callable[..., subprocess.CompletedProcess[str]]
    prefix: Path
    variables: dict
    work: Path
    broker: Unit

    def restart_broker(self) -> None:
        """What systemd does on the host when the playbook's handler restarts Kafka."""
        self.broker.stop()
        self.broker.start(self.work)
        wait_until(lambda: embedded.port_open(self.variables["kafka_port"]), 90,
                   "the restarted broker")
        wait_until(lambda: logs_in(admin_settings(self.variables)), 60,
                   "the restarted broker to serve the admin")


def recaps(output: str) -> list[str]:
    """The PLAY RECAP line of every host."""
    return [line for line in output.split("PLAY RECAP")[-1].splitlines() if "ok=" in line]


def unchanged(output: str) -> bool:
    return all("changed=0" in line for line in recaps(output))


def handled(output: str, handler: str) -> list[str]:
    """"host: item" of each run of `handler` (skipped too: without systemd it restarts
    nothing, but its loop shows what it would restart)."""
    hosts, items, inside = [], [], False
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY ")):
            inside = line.startswith(f"RUNNING HANDLER [{handler}]")
        elif inside and line.startswith(("ok: [", "changed: [", "skipping: [")):
            host = line.split("[", 1)[1].split("]", 1)[0]
            if "(item=" in line:  # a loop's item (the loop's own line follows)
                items.append(f"{host}: {line.split('(item=', 1)[1].split(')', 1)[0]}")
            else:
                hosts.append(host)
    return items or hosts


def changed_tasks(output: str) -> list[str]:
    """"task: host" of every change a run reports (what an assertion shows)."""
    task, changes = "", []
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            changes.append(f"{task}: {line}")
    return changes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """site.yml on this machine: the broker (started from its installed unit) and two
    instruments' hosts (their logins and topics; their services are not started)."""
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
        "kafka_credentials_dir": str(work / "credentials"), "kafka_no_log": False}
    (work / "vars.json").write_text(json.dumps(variables))
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    # the instruments come from the inventory: kafka_instruments is derived from it
    instruments = {f"{name.lower()}.test": {**local, "instrument_name": name,
                                             "instrument_prefix": f"TE:{name}:"}
                   for name in (INSTRUMENT, OTHER)}
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {
        "kafka_brokers": {"hosts": {"localhost": {**local, "kafka_node_id": 1}}},
        "instruments": {"hosts": instruments}, "monitoring": {"hosts": {}}}}}))

    def play(*extra: str, playbook_file: str = "site.yml") -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        done = subprocess.run(
            [playbook, "-i", str(work / "inventory.yml"), str(ANSIBLE / playbook_file),
             "-e", f"@{work / 'vars.json'}", *extra], capture_output=True, text=True,
            timeout=900, cwd=ANSIBLE, env=os.environ | {"ANSIBLE_NOCOLOR": "1"})
        print(f"ansible-playbook {playbook_file} {' '.join(extra)}: "
              f"{time.monotonic() - t0:.0f} s")
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        return done

    play("--skip-tags", "topics")  # the broker is not running yet: no systemd here
    kafka = Unit(prefix / "etc" / "systemd" / "system" / "kafka.service")
    kafka.start(work)
    try:
        wait_until(lambda: embedded.port_open(variables["kafka_port"]), 90,
                   "the deployed broker")
        wait_until(lambda: logs_in(admin_settings(variables)), 60, "the admin's login")
        # a cluster of before: the shared file writer principal, with SEC's ACLs and a login
        # on SEC's host, which the run below must take away
        admin = admin_settings(variables)
        ensure_scram_users(admin, {SHARED: "the-shared-password"})
        ensure_acls(admin, instrument_acls(InstrumentTopics(INSTRUMENT)))
        (Path(variables["kafka_credentials_dir"]) / SHARED).write_text("the-shared-password\n")
        (prefix / "etc" / "datastream" / INSTRUMENT / f"kafka-{SHARED}.env").write_text(
            f"DATASTREAM_SASL_USERNAME={SHARED}\nDATASTREAM_SASL_PASSWORD=the-shared-password\n")
        first = play()  # the principals, their ACLs, the instruments' topics
        assert not unchanged(first.stdout)
        yield Cluster(play, prefix, variables, work, kafka)
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


def admin_settings(variables: dict, password: str | None = None) -> KafkaSettings:
    return settings(variables, "admin", password, mechanism="PLAIN")


def principal(instrument: str, service: str) -> str:
    return f"{instrument.lower()}-{service}"


def login(env_file: Path, variables: dict) -> KafkaSettings:
    """The settings a unit gets from its deployed EnvironmentFile."""
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
               if line and not line.startswith("#"))
    return KafkaSettings(f"127.0.0.1:{variables['kafka_port']}",
                         security_protocol=env["DATASTREAM_SECURITY_PROTOCOL"],
                         sasl_mechanism=env["DATASTREAM_SASL_MECHANISM"],
                         sasl_username=env["DATASTREAM_SASL_USERNAME"],
                         sasl_password=env["DATASTREAM_SASL_PASSWORD"],
                         ssl_cafile=env["DATASTREAM_SSL_CAFILE"])


def consumed(client: KafkaSettings, topic: str, marker: bytes | None,
             timeout: float = 60) -> KafkaError | None:
    """Read `topic` until `marker` comes (None: no error) or the broker refuses (the
    error)."""
    consumer = make_consumer(client)
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                              KafkaError.GROUP_AUTHORIZATION_FAILED):
                    return message.error()
            elif message.value() == marker:
                return None
    finally:
        consumer.close()
    raise AssertionError(f"neither {marker!r} nor a refusal on {topic} in {timeout} s")


@pytest.fixture(scope="module")
def topics(cluster):
    topics = InstrumentTopics(INSTRUMENT)
    ensure_topics(admin_settings(cluster.variables), topics)  # made by the play: nothing to do
    return topics


def test_a_second_run_changes_nothing(cluster):
    again = cluster.play()
    assert unchanged(again.stdout), changed_tasks(again.stdout)


def test_the_secrets_are_readable_by_their_owner_only(cluster):
    prefix, variables = cluster.prefix, cluster.variables
    conf = prefix / "etc" / "datastream" / "kafka"
    credentials = Path(variables["kafka_credentials_dir"])
    private = [conf / "server.properties", conf / "tls" / "broker.pem",
               credentials / "admin", credentials / "tls" / "ca.key",
               *(credentials / principal(instrument, service)
                 for instrument in (INSTRUMENT, OTHER) for service in SERVICES)]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    properties = (conf / "server.properties").read_text()
    assert "PLAINTEXT" not in properties.replace("SASL_PLAINTEXT", "")
    assert "allow.everyone.if.no.acl.found=false" in properties
    assert "super.users=User:admin\n" in properties


def refused(client: KafkaSettings) -> bool:
    """Whether librdkafka gets no metadata with these settings (it waits out its timeout)."""
    try:
        make_admin(client).list_topics(timeout=5)
    except KafkaException:
        return True
    return False


def test_no_listener_serves_a_client_that_does_not_log_in(cluster, topics, tmp_path_factory):
    variables = cluster.variables
    run_control = principal(INSTRUMENT, "runcontrol")
    # PLAINTEXT, TLS without SASL, SASL without credentials: librdkafka gets nothing
    anonymous = [KafkaSettings(f"127.0.0.1:{variables['kafka_port']}"),
                 settings(variables), settings(variables, "", "", mechanism="PLAIN"),
                 settings(variables, run_control, "not-it")]
    # nor the Admin API on any listener, the controller's included (Kafka's Java client)
    classes = compile_probe(tmp_path_factory)
    ca = Path(variables["kafka_credentials_dir"]) / "tls" / "ca.pem"
    tls = {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca)}
    clients = [{}, {"security.protocol": "SSL", **tls},
               {**plain("", "", "SASL_SSL"), **tls},
               {**plain("admin", "not-it", "SASL_SSL"), **tls},
               {**plain(run_control, secret(variables, run_control), "SASL_SSL"), **tls}]
    listeners = [("servers", f"127.0.0.1:{variables['kafka_port']}"),
                 ("controllers", f"127.0.0.1:{variables['kafka_controller_port']}")]
    cases = [(kind, address, client, topics.run_info)
             for kind, address in listeners for client in clients]
    # every refusal waits out a timeout: the librdkafka clients' side by side, and beside
    # the Java probe's, so that they cost one timeout, not one each
    with concurrent.futures.ThreadPoolExecutor(len(anonymous) + 1) as pool:
        probed = pool.submit(probe_all, classes, cases)
        outcomes = list(pool.map(refused, anonymous))
        answered = probed.result()
    for client, outcome in zip(anonymous, outcomes, strict=True):
        assert outcome, (client.security_protocol, client.sasl_username)
    for case, answers in zip(cases, answered, strict=True):
        assert all(answer.startswith("REFUSED") for answer in answers.values()), \
            (case[:2], case[2].get("sasl.jaas.config", case[2].get("security.protocol")),
             answers)
    admin = make_admin(admin_settings(variables))
    assert topics.run_info in admin.list_topics(timeout=10).topics
    # the admin may, on both listeners (the check that the probe can succeed at all); alone,
    # after the others: among ten clients' TLS handshakes its own may not be done in the
    # probe's 6 s on a loaded machine
    admin_client = {**plain("admin", secret(variables, "admin"), "SASL_SSL"), **tls}
    on_controller = probe_all(classes, [(listeners[1][0], listeners[1][1], admin_client,
                                         "no-such-topic", "blessed")])[0]
    assert on_controller["createAcls"] == "OK", on_controller
    assert set(on_controller) == set(OPERATIONS)


def test_a_service_may_do_what_its_acls_allow_and_nothing_else(cluster, topics):
    variables = cluster.variables
    with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
        deliver(make_producer(settings(variables, principal(INSTRUMENT, "forwarder"))),
                topics.run_info, b"intruder")
    run_control = settings(variables, principal(INSTRUMENT, "runcontrol"))
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


def test_an_instruments_principals_reach_its_own_topics_only(cluster, topics):
    variables, etc = cluster.variables, cluster.prefix / "etc" / "datastream"
    passwords = {principal(i, s): secret(variables, principal(i, s))
                 for i in (INSTRUMENT, OTHER) for s in SERVICES}
    # each instrument's host holds its own services' logins (0640), no other instrument's,
    # and no longer the shared login of before
    for instrument in (INSTRUMENT, OTHER):
        logins = sorted((etc / instrument).glob("kafka-*.env"))
        assert [p.name for p in logins] == sorted(
            f"kafka-{principal(instrument, s)}.env" for s in SERVICES)
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in logins)
        held = "".join(p.read_text() for p in (etc / instrument).iterdir() if p.is_file())
        assert sorted(p for p, password in passwords.items() if password in held) == sorted(
            principal(instrument, s) for s in SERVICES)
    # SEC's file writer, with the login SEC's host was given: its own topics, read and
    # written, and nothing of SEC2's
    writer = login(etc / INSTRUMENT / f"kafka-{principal(INSTRUMENT, 'filewriter')}.env",
                   variables)
    assert writer.sasl_username == "sec-filewriter"
    ours, theirs = topics, InstrumentTopics(OTHER)
    marker = f"written-{uuid.uuid4()}".encode()
    deliver(make_producer(writer), ours.writer_status, marker)
    assert consumed(writer, ours.writer_status, marker) is None
    with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
        deliver(make_producer(writer), theirs.writer_status, b"intruder")
    refusal = consumed(writer, theirs.run_info, None)
    assert refusal is not None and refusal.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # SEC2's own file writer does write there
    deliver(make_producer(login(etc / OTHER / f"kafka-{principal(OTHER, 'filewriter')}.env",
                                variables)), theirs.writer_status, marker)
    # the shared principal of before is gone: no login, no ACL, no password file
    assert not logs_in(settings(variables, SHARED, "the-shared-password"))
    admin = make_admin(admin_settings(variables))
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    holders = {b.principal for b in admin.describe_acls(every).result(30)}
    assert {f"User:{p}" for p in passwords} <= holders
    assert not holders & {f"User:{service}" for service in SERVICES}  # the shared ones
    assert not (Path(variables["kafka_credentials_dir"]) / SHARED).exists()


def served_certificate(port: int) -> dict[str, str]:
    """The serial and the end of validity of the certificate a listener serves."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    shown = subprocess.run([require("openssl"), "x509", "-noout", "-serial", "-enddate"],
                           input=pem, capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in shown.splitlines())


def test_rotate_yml_rotates_passwords_and_renews_certificates(cluster, topics):
    """Last in the module: it changes the cluster's secrets."""
    variables, etc = cluster.variables, cluster.prefix / "etc" / "datastream"
    writer, run_control = principal(INSTRUMENT, "filewriter"), principal(INSTRUMENT, "runcontrol")
    before = {name: secret(variables, name) for name in (writer, run_control, "admin")}
    others = {p: p.read_text() for p in (etc / OTHER).glob("kafka-*.env")}
    certificates = {port: served_certificate(variables[port])
                    for port in ("kafka_port", "kafka_controller_port")}
    # a routine run (certificates valid beyond 30 days, nothing named) changes nothing
    routine = cluster.play(playbook_file="rotate.yml")
    assert unchanged(routine.stdout), changed_tasks(routine.stdout)

    # a service's and the admin's passwords, and every certificate (825 days < the window)
    rotated = cluster.play("-e", json.dumps({"kafka_rotate_principals": [writer, "admin"],
                                             "kafka_cert_renew_days": 100000}),
                           playbook_file="rotate.yml")
    # one restart of the broker for the admin's password and the certificate together, and
    # of SEC's file writer alone on the instruments' side
    assert handled(rotated.stdout, "kafka : Restart Kafka") == ["localhost"]
    assert handled(rotated.stdout, "instrument : Restart the instrument") == [
        "sec.test: datastream-sec-filewriter"]
    after = {name: secret(variables, name) for name in before}
    assert after[writer] != before[writer] and after["admin"] != before["admin"]
    assert after[run_control] == before[run_control]
    # the service's: in the cluster at once, no restart; on its instrument's host only
    assert not logs_in(settings(variables, writer, before[writer]))
    new_login = login(etc / INSTRUMENT / f"kafka-{writer}.env", variables)
    assert new_login.sasl_password == after[writer]
    assert {p: p.read_text() for p in (etc / OTHER).glob("kafka-*.env")} == others

    # the admin's and the certificates take the broker's restart (systemd's, on a host)
    properties = (etc / "kafka" / "server.properties").read_text()
    assert before["admin"] not in properties and after["admin"] in properties
    cluster.restart_broker()
    assert not logs_in(admin_settings(variables, before["admin"]))
    assert logs_in(admin_settings(variables))  # the new one, and TLS trusting the same CA
    for port, old in certificates.items():
        new = served_certificate(variables[port])
        assert new["serial"] != old["serial"], port
        assert (ssl.cert_time_to_seconds(new["notAfter"])
                > ssl.cert_time_to_seconds(old["notAfter"])), port
    # the rotated service works with its new password, the others with theirs
    marker = f"rotated-{uuid.uuid4()}".encode()
    deliver(make_producer(new_login), topics.writer_status, marker)
    assert consumed(settings(variables, run_control), topics.writer_status, marker) is None
