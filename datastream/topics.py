"""The ISIS topic names of an instrument, and waiting for them to be listed."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException

from datastream.kafka_client import KafkaSettings, make_admin

log = logging.getLogger(__name__)

# the ISIS suffixes; partitions, replication and configuration are in the topic table
# (datastream.topic_table, iocBoot/topics.toml)
TOPIC_SUFFIXES: tuple[str, ...] = (
    "runInfo", "events", "sampleEnv", "runLog", "forwarderConfig", "forwarderStorage",
    "forwarderStatus", "detSpecMap", "monitorHistograms",
    # the file writer's answ, wrdn and x5f2 where it may not write runInfo (Kafka ACLs)
    "writerStatus",
    # `datastream doctor` writes a small message; the broker's append time gives the clock
    # offset of the host against the broker
    "heartbeat",
    # the live view's just-bin-it interface: JSON commands in, answers, its x5f2 heartbeat,
    # and a topic for the histograms (hs00/hs01) that clients may name in their configs
    "liveCommands", "liveResponses", "liveStatus", "liveHistograms",
    # the live reduction's da00 (I(d), I(2θ, d), I(λ)): apart from the hs00/hs01 topic,
    # whose readers (NICOS's just-bin-it devices) take histograms only
    "liveData",
    # ibex_bluesky_core's RunEngine publishes its documents here (<INST>_bluesky, from
    # COMPUTERNAME less NDX), msgpack [name, doc]; it creates no topic itself
    "bluesky",
)


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
