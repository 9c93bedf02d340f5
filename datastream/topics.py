"""The ISIS topic names of an instrument, and creating them (clusters do not auto-create)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from datastream.kafka_client import MAX_MESSAGE_BYTES, KafkaSettings, make_admin

log = logging.getLogger(__name__)

# suffix -> extra topic configuration
TOPIC_SUFFIXES: dict[str, dict[str, str]] = {
    "runInfo": {},
    "events": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
    "sampleEnv": {},
    "runLog": {},
    "forwarderConfig": {},
    "forwarderStorage": {},
    "forwarderStatus": {},
    "detSpecMap": {},
    "monitorHistograms": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
    # the file writer's answ, wrdn and x5f2 where it may not write runInfo (Kafka ACLs)
    "writerStatus": {},
}


@dataclass(frozen=True)
class InstrumentTopics:
    instrument: str

    def name(self, suffix: str) -> str:
        if suffix not in TOPIC_SUFFIXES:
            raise KeyError(f"unknown topic suffix {suffix!r}")
        return f"{self.instrument}_{suffix}"

    @property
    def run_info(self) -> str:
        return self.name("runInfo")

    @property
    def events(self) -> str:
        return self.name("events")

    @property
    def sample_env(self) -> str:
        return self.name("sampleEnv")

    @property
    def run_log(self) -> str:
        return self.name("runLog")

    @property
    def forwarder_config(self) -> str:
        return self.name("forwarderConfig")

    @property
    def writer_status(self) -> str:
        return self.name("writerStatus")

    @property
    def forwarder_status(self) -> str:
        return self.name("forwarderStatus")

    def all(self) -> list[str]:
        return [self.name(s) for s in TOPIC_SUFFIXES]


def create_topics(
    settings: KafkaSettings,
    topics: InstrumentTopics,
    partitions: int = 1,
    replication: int = 1,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create the instrument's topics; returns topic -> "created" | "exists".
    Raises on any other error."""
    admin = make_admin(settings)
    wanted = [
        NewTopic(topics.name(s), num_partitions=partitions, replication_factor=replication,
                 config=extra)
        for s, extra in TOPIC_SUFFIXES.items()
    ]
    futures = admin.create_topics(wanted, request_timeout=timeout, operation_timeout=timeout)
    outcome: dict[str, str] = {}
    errors: list[str] = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                outcome[name] = "exists"
            else:
                errors.append(f"{name}: {err.str()}")
    if errors:
        raise RuntimeError("could not create topics: " + "; ".join(errors))
    return outcome


def wait_for_topics(settings: KafkaSettings, names: list[str], timeout: float = 30.0) -> None:
    """Block until the cluster's metadata lists every topic (new topics take a moment)."""
    import time

    admin = make_admin(settings)
    deadline = time.monotonic() + timeout
    missing = set(names)
    while True:
        try:
            listed = admin.list_topics(timeout=5).topics
            missing = {n for n in names if n not in listed or listed[n].error is not None}
        except KafkaException as exc:
            log.debug("metadata request failed: %s", exc)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not available after {timeout}s: {sorted(missing)}")
        time.sleep(0.2)
