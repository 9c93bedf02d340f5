"""The embedded broker's ACL profile (BrokerConfig(admin_password=..., sasl_users=...)) on
every listener, the controller's included: a client that does not log in, or logs in as a
principal without the right, can neither create an ACL, nor set a SCRAM credential, nor
delete a topic; the admin can. The requests are made with Kafka's own Java Admin client
(what `kafka-acls.sh --bootstrap-controller` uses), which also talks to the controller
listener directly, as librdkafka does not."""

from __future__ import annotations

import secrets
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from datastream.kafka_client import KafkaSettings, make_admin
from launcher.broker import embedded
from tests.conftest import free_port
from tests.system_tools import require

pytestmark = pytest.mark.integration

PROBE_SOURCE = r"""
import java.io.FileInputStream;
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.resource.*;

/** args: one group of five per case: servers|controllers host:port client.properties topic
 * user. For each case, with its own Admin client, tries to create an ACL giving `user`
 * everything on every topic, to set a SCRAM credential of `user`, to delete `topic`; prints
 * "CASE NAME OK" or "CASE NAME REFUSED exception: message" for each (CASE: the group's index).
 * The cases run side by side in this one JVM, and each sends its three requests together: a
 * client that gets no answer waits out one request timeout, not one per request and case. */
public class KafkaProbe {
    public static void main(String[] args) throws Exception {
        List<Thread> cases = new ArrayList<>();
        for (int first = 0; first + 5 <= args.length; first += 5) {
            int index = first / 5;
            String[] arg = Arrays.copyOfRange(args, first, first + 5);
            Thread thread = new Thread(() -> probe(index, arg));
            thread.start();
            cases.add(thread);
        }
        for (Thread thread : cases) thread.join();
    }

    static void probe(int index, String[] args) {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[2])) { props.load(in); }
        catch (Exception e) { throw new RuntimeException(e); }
        props.put(args[0].equals("controllers") ? "bootstrap.controllers"
                                                : "bootstrap.servers", args[1]);
        props.put("request.timeout.ms", "5000");
        props.put("default.api.timeout.ms", "6000");
        props.put("retries", "0");
        try (Admin admin = Admin.create(props)) {
            AclBinding acl = new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, "*", PatternType.LITERAL),
                new AccessControlEntry("User:" + args[4], "*", AclOperation.ALL,
                                       AclPermissionType.ALLOW));
            KafkaFuture<Void> acls = admin.createAcls(List.of(acl)).all();
            KafkaFuture<Void> scram = admin.alterUserScramCredentials(List.of(
                new UserScramCredentialUpsertion(args[4], new ScramCredentialInfo(
                    ScramMechanism.SCRAM_SHA_512, 4096), "chosen-by-the-client"))).all();
            KafkaFuture<Void> delete = admin.deleteTopics(List.of(args[3])).all();
            report(index, "createAcls", acls);
            report(index, "alterScram", scram);
            report(index, "deleteTopic", delete);
        }
    }

    static void report(int index, String name, KafkaFuture<Void> answer) {
        String line;
        try { answer.get(10, TimeUnit.SECONDS); line = name + " OK"; }
        catch (Exception e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            line = name + " REFUSED " + c.getClass().getSimpleName() + ": " + c.getMessage();
        }
        synchronized (System.out) { System.out.println(index + " " + line); System.out.flush(); }
    }
}
"""

OPERATIONS = ("createAcls", "alterScram", "deleteTopic")


def compile_probe(factory: pytest.TempPathFactory) -> Path:
    """KafkaProbe.class against the broker's own client jar: compiled once a session, in its
    base temp folder, for every module that probes (javac takes seconds of both cores)."""
    directory = factory.getbasetemp() / "kafka-probe"
    if (directory / "KafkaProbe.class").exists():
        return directory
    javac = require("javac")
    libs = embedded.fetch_jars()
    build = factory.mktemp("kafka-probe-build")
    (build / "KafkaProbe.java").write_text(PROBE_SOURCE)
    done = subprocess.run([javac, "-cp", f"{libs}/*", "-d", str(build),
                           str(build / "KafkaProbe.java")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    build.rename(directory)  # in place only once whole
    return directory


def probe_all(classes: Path, cases: list[tuple]) -> list[dict[str, str]]:
    """What the Java Admin client got in each case (kind, address, client properties, topic,
    and the user, "intruder" unless given): for each operation "OK" or "REFUSED <why>". All
    the cases in one JVM, side by side: a JVM's start costs seconds of CPU, and a refused
    client waits for its timeout."""
    arguments: list[str] = []
    files: list[Path] = []
    try:
        for kind, address, client, topic, *user in cases:
            props = classes / f"client-{uuid.uuid4().hex}.properties"
            props.touch(mode=0o600)  # it may hold a password
            files.append(props)
            props.write_text("".join(f"{k}={v}\n" for k, v in client.items()))
            arguments += [kind, address, str(props), topic, *(user or ["intruder"])]
        done = subprocess.run(
            ["java", "-cp", f"{classes}:{embedded.fetch_jars()}/*", "KafkaProbe", *arguments],
            capture_output=True, text=True, timeout=120)
    finally:
        for props in files:
            props.unlink()
    answers: list[dict[str, str]] = [{} for _ in cases]
    for line in done.stdout.splitlines():  # "<case> <operation> <answer>"
        index, _, rest = line.partition(" ")
        operation, _, answer = rest.partition(" ")
        if index.isdigit() and int(index) < len(cases) and operation in OPERATIONS:
            answers[int(index)][operation] = answer
    for case, answer in zip(cases, answers, strict=True):
        assert set(answer) == set(OPERATIONS), (case[:2], done.stdout + done.stderr[-3000:])
    return answers


def plain(user: str, password: str, protocol: str = "SASL_PLAINTEXT") -> dict[str, str]:
    return {"security.protocol": protocol, "sasl.mechanism": "PLAIN",
            "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
                                f'required username="{user}" password="{password}";'}


def scram(user: str, password: str, protocol: str = "SASL_PLAINTEXT",
          mechanism: str = "SCRAM-SHA-256") -> dict[str, str]:
    return {"security.protocol": protocol, "sasl.mechanism": mechanism,
            "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
                                f'required username="{user}" password="{password}";'}


USERS = {"runcontrol": secrets.token_urlsafe(16)}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    config = embedded.BrokerConfig(
        tmp_path_factory.mktemp("secure-kafka"), port=free_port(), controller_port=free_port(),
        heap="512m", admin_password=secrets.token_urlsafe(16), sasl_users=tuple(USERS.items()))
    embedded.start(config)
    try:
        yield config
    finally:
        embedded.stop(config)


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    return compile_probe(tmp_path_factory)


def admin_settings(config: embedded.BrokerConfig) -> KafkaSettings:
    return KafkaSettings(config.bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="PLAIN", sasl_username="admin",
                         sasl_password=config.admin_password)


def new_topic(config: embedded.BrokerConfig) -> str:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    admin = make_admin(admin_settings(config))  # alive until its answer
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def topics(config: embedded.BrokerConfig) -> set[str]:
    return set(make_admin(admin_settings(config)).list_topics(timeout=10).topics)


def acls_of(config: embedded.BrokerConfig, principal: str) -> list:
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                             f"User:{principal}", None, AclOperation.ANY,
                             AclPermissionType.ANY)
    admin = make_admin(admin_settings(config))
    return admin.describe_acls(every).result(30)


def scram_users(config: embedded.BrokerConfig) -> set[str]:
    admin = make_admin(admin_settings(config))
    return set(admin.describe_user_scram_credentials().result(30))


def every_listener(config: embedded.BrokerConfig) -> list[tuple[str, str]]:
    return [("servers", config.bootstrap),
            ("controllers", f"127.0.0.1:{config.controller_port}")]


def test_no_listener_serves_a_client_that_does_not_log_in(secured, classes):
    victim = new_topic(secured)
    cases = [(kind, address, client, victim)
             for kind, address in every_listener(secured)
             for client in ({},  # PLAINTEXT
                            plain("", ""),  # SASL without credentials
                            plain("admin", "not-it"),  # the admin's name, a wrong password
                            plain("ANONYMOUS", ""))]
    for case, answers in zip(cases, probe_all(classes, cases), strict=True):
        allowed = {op: answer for op, answer in answers.items() if answer == "OK"}
        assert not allowed, (case[:2], case[2].get("sasl.jaas.config", "PLAINTEXT"), answers)
    assert victim in topics(secured)
    assert not acls_of(secured, "intruder")
    assert "intruder" not in scram_users(secured)


def test_a_principal_without_the_right_is_refused(secured, classes):
    victim = new_topic(secured)
    password = USERS["runcontrol"]
    cases = [("servers", secured.bootstrap, scram("runcontrol", password), victim),
             # the services' SCRAM users have no PLAIN password; the controller takes PLAIN
             ("controllers", f"127.0.0.1:{secured.controller_port}",
              plain("runcontrol", password), victim)]
    on_client, on_controller = probe_all(classes, cases)
    assert all("REFUSED" in answer and "uthoriz" in answer for answer in on_client.values()), \
        on_client
    assert all("REFUSED" in answer for answer in on_controller.values()), on_controller
    assert victim in topics(secured)
    assert not acls_of(secured, "intruder")


def test_the_admin_may(secured, classes):
    victim = new_topic(secured)
    admin = plain("admin", secured.admin_password)
    # both listeners in one probe (one JVM): each grants its own user, and the Java client
    # sends no deleteTopics to a controller, so neither answer depends on the other
    on_client, on_controller = probe_all(classes, [
        ("servers", secured.bootstrap, admin, victim, "blessed"),
        ("controllers", f"127.0.0.1:{secured.controller_port}", admin, victim, "blessed2")])
    assert on_client == dict.fromkeys(OPERATIONS, "OK"), on_client
    assert victim not in topics(secured)
    assert "blessed" in scram_users(secured) and acls_of(secured, "blessed")
    # the brokers' own login to their controller is the admin's: the Admin API there serves
    # ACLs (its other calls the Java client does not send to a controller)
    assert on_controller["createAcls"] == "OK", on_controller
    assert acls_of(secured, "blessed2")
