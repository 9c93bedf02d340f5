"""Make a cluster's topics what the topic table says (`datastream topics ensure`), or report
how they differ (`topics check`).

All or nothing: the plan is made first, Kafka validates every change (validate_only), and only
then is anything changed. What Kafka cannot do (fewer partitions, more replicas than brokers, a
different replication factor of an existing topic) is refused with the reason and changes
nothing. Nothing is ever deleted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from datastream.kafka_client import KafkaSettings, make_admin
from datastream.topic_table import TopicSpec, load_table
from datastream.topics import InstrumentTopics, wait_for_topics


class TopicsRefused(RuntimeError):
    """The table asks for what Kafka cannot do, or Kafka refused a change; nothing changed.
    `plan`: what was planned, refusals included."""

    def __init__(self, message: str, plan: TopicPlan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass
class TopicPlan:
    brokers: int
    create: list[NewTopic] = field(default_factory=list)
    grow: list[NewPartitions] = field(default_factory=list)
    # topic -> key -> (now, wanted)
    configs: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.create or self.grow or self.configs)

    def lines(self) -> list[str]:
        out = [f"{t.topic}: create ({t.num_partitions} partitions, replication "
               f"{t.replication_factor}, {', '.join(f'{k}={v}' for k, v in t.config.items())})"
               for t in self.create]
        out += [f"{p.topic}: partitions -> {p.new_total_count}" for p in self.grow]
        out += [f"{topic}: {key} {now} -> {wanted}"
                for topic, keys in self.configs.items() for key, (now, wanted) in keys.items()]
        return out + [f"REFUSED {r}" for r in self.refusals]


def _current_configs(admin: AdminClient, names: list[str], timeout: float,
                     ) -> dict[str, dict[str, str | None]]:
    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names],
                                     request_timeout=timeout)
    return {res.name: {k: e.value for k, e in fut.result(timeout=timeout).items()}
            for res, fut in futures.items()}


def plan_topics(admin: AdminClient, topics: InstrumentTopics, table: Mapping[str, TopicSpec],
                timeout: float = 30.0) -> TopicPlan:
    metadata = admin.list_topics(timeout=timeout)
    plan = TopicPlan(brokers=len(metadata.brokers))
    existing = {topics.name(s): metadata.topics[topics.name(s)] for s in table
                if topics.name(s) in metadata.topics and
                metadata.topics[topics.name(s)].error is None}
    current = _current_configs(admin, list(existing), timeout)
    for suffix, spec in table.items():
        name = topics.name(suffix)
        replication = spec.replication_for(plan.brokers)
        wanted = spec.configs_for(plan.brokers)
        isr = int(wanted.get("min.insync.replicas", "1"))
        if replication > plan.brokers:
            plan.refusals.append(f"{name}: replication {replication} asked, the cluster has "
                                 f"{plan.brokers} broker(s)")
            continue
        if isr > replication:
            plan.refusals.append(f"{name}: min.insync.replicas {isr} > replication "
                                 f"{replication}: producers (acks=all) could never write")
            continue
        if name not in existing:
            plan.create.append(NewTopic(name, num_partitions=spec.partitions,
                                        replication_factor=replication, config=wanted))
            continue
        meta = existing[name]
        have = len(meta.partitions)
        have_replicas = len(next(iter(meta.partitions.values())).replicas) if have else 0
        if spec.partitions < have:
            plan.refusals.append(
                f"{name}: the table asks for {spec.partitions} partition(s), the topic has "
                f"{have}; Kafka cannot remove partitions (only deleting the topic, and its "
                "data, would; do that by hand if it is really meant)")
            continue
        if have_replicas != replication:
            plan.refusals.append(
                f"{name}: replication {have_replicas}, the table says {replication}; changing "
                "it moves data between brokers (kafka-reassign-partitions.sh), which ensure "
                "does not do")
            continue
        if spec.partitions > have:
            plan.grow.append(NewPartitions(name, spec.partitions))
        differ = {k: (current[name].get(k), v) for k, v in wanted.items()
                  if current[name].get(k) != v}
        if differ:
            plan.configs[name] = differ
        if spec.partitions == have and not differ:
            plan.unchanged.append(name)
    return plan


def _wait_all(futures: Mapping[object, object], timeout: float, what: str,
              plan: TopicPlan) -> None:
    errors = []
    for key, fut in futures.items():
        try:
            fut.result(timeout=timeout)  # type: ignore[attr-defined]
        except KafkaException as exc:
            name = getattr(key, "name", key)
            errors.append(f"{name}: {exc.args[0].str()}")
    if errors:
        raise TopicsRefused(f"Kafka refused to {what}: " + "; ".join(errors), plan)


def apply_plan(admin: AdminClient, plan: TopicPlan, timeout: float = 30.0) -> None:
    """Validate every change with Kafka, then make them; raises TopicsRefused, having changed
    nothing, if the plan has refusals or Kafka would refuse a change."""
    if plan.refusals:
        raise TopicsRefused("; ".join(plan.refusals), plan)
    alter = [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, wanted, incremental_operation=AlterConfigOpType.SET)
        for k, (_now, wanted) in keys.items()]) for topic, keys in plan.configs.items()]
    for validate_only in (True, False):
        kw = {"request_timeout": timeout, "validate_only": validate_only}
        if plan.create:
            _wait_all(admin.create_topics(plan.create, operation_timeout=timeout, **kw),
                      timeout, "create topics", plan)
        if plan.grow:
            _wait_all(admin.create_partitions(plan.grow, operation_timeout=timeout, **kw),
                      timeout, "add partitions", plan)
        if alter:
            _wait_all(admin.incremental_alter_configs(alter, **kw), timeout,
                      "change topic configuration", plan)


def ensure_topics(settings: KafkaSettings, topics: InstrumentTopics,
                  table: Mapping[str, TopicSpec] | None = None,
                  timeout: float = 30.0, apply: bool = True) -> TopicPlan:
    """Plan, apply, and wait until every topic is listed; returns the plan that was made.
    With apply False only the plan (`topics check`)."""
    table = load_table() if table is None else table
    admin = make_admin(settings)
    plan = plan_topics(admin, topics, table, timeout)
    if apply:
        apply_plan(admin, plan, timeout)
        wait_for_topics(settings, [topics.name(s) for s in table], timeout)
    return plan
