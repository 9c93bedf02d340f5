"""Kafka ACLs of an instrument: one principal per service, each allowed what it does and no
more. Only run control writes run starts (runInfo) and events; the file writer reads the
instrument's topics and writes only its reports (writerStatus); the forwarder writes the
sample-environment topics and reads its configuration. Everyone else, anonymous included,
is refused by a broker whose authorizer allows nothing without an ACL."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
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
    ]
    bindings += [allow(p, group, AD_HOC_GROUPS, read, prefixed) for p in (rc, fw, fwd)]
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
