"""Kafka ACLs of an instrument: one principal per service (on a cluster several instruments
share, per instrument and service: `Principals("sec-runcontrol", ...)`, as the Ansible kafka
role names them), each allowed what it does and no more. Only run control writes run starts
(runInfo) and events; the file writer reads the instrument's topics and writes only its
reports (writerStatus); the forwarder writes the sample-environment topics and reads its
configuration; the live view reads the runs, the events, the sample environment and its
commands and writes only its answers, status and histograms. Everyone else, anonymous
included, is refused by a broker whose authorizer allows nothing without an ACL."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from datastream.kafka_client import KafkaSettings, make_admin
from datastream.topics import InstrumentTopics

# consumers that only assign() (listeners, job data consumers) still carry a group id
AD_HOC_GROUPS = "datastream-"


@dataclass(frozen=True)
class Principals:
    run_control: str = "runcontrol"
    filewriter: str = "filewriter"
    forwarder: str = "forwarder"
    liveview: str = "liveview"

    @classmethod
    def of_instrument(cls, instrument: str) -> Principals:
        """The principals of one instrument on a shared cluster, as the Ansible kafka role
        names them: <instrument, lowercase>-<service>."""
        prefix = instrument.lower()
        return cls(*(f"{prefix}-{service}" for service in
                     ("runcontrol", "filewriter", "forwarder", "liveview")))


def instrument_acls(topics: InstrumentTopics, principals: Principals = Principals(),
                    writer_group: str | None = None) -> list[AclBinding]:
    """The ACL bindings of the instrument's services."""
    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    instrument_prefix = f"{topics.instrument}_"

    def allow(principal: str, resource: ResourceType, name: str, operation: AclOperation,
              pattern: ResourcePatternType = literal) -> AclBinding:
        return AclBinding(resource, name, pattern, f"User:{principal}", "*", operation,
                          AclPermissionType.ALLOW)

    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    read, write, describe = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    rc, fw, fwd = principals.run_control, principals.filewriter, principals.forwarder
    lv = principals.liveview
    bindings = [
        # run control: run starts and stops, the DAE's events; what the writer, the forwarder
        # and (after a restart) the events topic say
        allow(rc, topic, topics.run_info, write),
        allow(rc, topic, topics.events, write),
        *(allow(rc, topic, t, read) for t in (topics.run_info, topics.writer_status,
                                              topics.forwarder_status, topics.events)),
        # the file writer: reads the instrument's topics, writes its reports only
        allow(fw, topic, instrument_prefix, read, prefixed),
        allow(fw, topic, topics.writer_status, write),
        allow(fw, group, writer_group or f"filewriter-{topics.instrument}", read),
        # the forwarder: sample environment, run log, its status and storage
        *(allow(fwd, topic, t, write) for t in (
            topics.sample_env, topics.run_log, topics.forwarder_status,
            topics.name("forwarderStorage"))),
        *(allow(fwd, topic, t, read) for t in (
            topics.forwarder_config, topics.name("forwarderStorage"))),
        allow(fwd, topic, instrument_prefix, describe, prefixed),
        # the live view: follows the runs and bins the events, shows the sample environment,
        # answers just-bin-it's commands; writes its answers, heartbeats and histograms only
        *(allow(lv, topic, t, read) for t in (
            topics.run_info, topics.events, topics.sample_env, topics.name("liveCommands"))),
        *(allow(lv, topic, topics.name(t), write) for t in (
            "liveResponses", "liveStatus", "liveHistograms", "liveData")),
    ]
    bindings += [allow(p, group, AD_HOC_GROUPS, read, prefixed) for p in (rc, fw, fwd, lv)]
    return bindings


def apply_acls(admin_settings: KafkaSettings, bindings: list[AclBinding],
               timeout: float = 30.0) -> int:
    """Create the bindings (idempotent: an existing one is left as it is); how many."""
    admin = make_admin(admin_settings)  # kept alive until every future is answered
    futures = admin.create_acls(bindings, request_timeout=timeout)
    for binding, future in futures.items():
        try:
            future.result(timeout)
        except Exception as exc:
            raise RuntimeError(f"could not create the ACL {binding}: {exc}") from exc
    return len(futures)


def _key(binding: AclBinding) -> tuple:
    return (binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
            binding.host, binding.operation, binding.permission_type)


def missing_acls(admin_settings: KafkaSettings, bindings: list[AclBinding],
                 timeout: float = 30.0) -> list[AclBinding]:
    """The bindings the cluster does not have yet."""
    admin = make_admin(admin_settings)
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    present = {_key(b) for b in admin.describe_acls(every, request_timeout=timeout)
               .result(timeout)}
    return [b for b in bindings if _key(b) not in present]


def ensure_acls(admin_settings: KafkaSettings, bindings: list[AclBinding],
                timeout: float = 30.0) -> int:
    """Create the bindings the cluster lacks; how many were made (0: nothing changed)."""
    missing = missing_acls(admin_settings, bindings, timeout)
    if missing:
        apply_acls(admin_settings, missing, timeout)
    return len(missing)


def logs_in(settings: KafkaSettings, timeout: float = 10.0) -> bool:
    """Whether these credentials log in. A refusal is known in a fraction of a second (the
    client's error callback), where a metadata request alone would retry until its timeout:
    ten seconds a principal that is new or has a new password."""
    errors: list[KafkaError] = []
    client = AdminClient(settings.common() | {"error_cb": errors.append})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=0.5)
            return True
        except KafkaException:
            client.poll(0)  # serves the error callback
        if any(error.code() == KafkaError._AUTHENTICATION for error in errors):
            return False
    return False


def ensure_scram_users(admin_settings: KafkaSettings, users: dict[str, str],
                       mechanism: str = "SCRAM-SHA-512", iterations: int = 8192,
                       timeout: float = 30.0) -> list[str]:
    """Give each user this SCRAM password unless it already logs in with it (tried on the
    admin's listener); the users whose credential was set."""
    changed = []
    for user, password in users.items():
        as_user = replace(admin_settings, sasl_mechanism=mechanism, sasl_username=user,
                          sasl_password=password)
        if logs_in(as_user, timeout=min(timeout, 10)):
            continue  # nothing to change
        admin = make_admin(admin_settings)
        upsert = UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], iterations),
            password.encode())
        for name, future in admin.alter_user_scram_credentials(
                [upsert], request_timeout=timeout).items():
            try:
                future.result(timeout)
            except Exception as exc:
                raise RuntimeError(f"could not set the SCRAM credential of {name}: {exc}"
                                   ) from exc
        changed.append(user)
    return changed


def retire_principals(admin_settings: KafkaSettings, users: list[str],
                      timeout: float = 30.0) -> list[str]:
    """Remove every ACL and SCRAM credential of these users (principals no longer used: the
    login of a retired principal must not keep its rights); the users that had any."""
    admin = make_admin(admin_settings)
    retired = []
    for user in users:
        every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                 f"User:{user}", None, AclOperation.ANY, AclPermissionType.ANY)
        acls = sum(len(future.result(timeout)) for future in
                   admin.delete_acls([every], request_timeout=timeout).values())
        try:
            described = admin.describe_user_scram_credentials(
                [user], request_timeout=timeout)[user].result(timeout)
            mechanisms = [info.mechanism for info in described.scram_credential_infos]
        except KafkaException as exc:  # no credential at all
            if exc.args[0].code() != KafkaError.RESOURCE_NOT_FOUND:
                raise
            mechanisms = []
        if mechanisms:
            deletions = [UserScramCredentialDeletion(user, m) for m in mechanisms]
            for future in admin.alter_user_scram_credentials(
                    deletions, request_timeout=timeout).values():
                future.result(timeout)
        if acls or mechanisms:
            retired.append(user)
    return retired
