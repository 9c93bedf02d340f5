"""`datastream topics ensure/check` against the real broker: drift is found and fixed, what
Kafka cannot do is refused with nothing changed, and the compacted storage topic takes the
forwarder's keyed configuration while keyless fc00 from other clients still reach the config
topic."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from datastream.instrument import InstrumentConfig, write_config
from datastream.kafka_client import deliver, make_admin, make_producer
from datastream.streams import Stream
from datastream.topic_table import load_table
from forwarder.storage import Storage, read_stored
from launcher.topic_ensure import TopicsRefused, ensure_topics, plan_topics

pytestmark = pytest.mark.integration


def topic_config(kafka, topic: str) -> dict[str, str]:
    admin = make_admin(kafka)
    [entries] = [f.result(10) for f in admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topic)]).values()]
    return {k: e.value for k, e in entries.items()}


def set_by_hand(kafka, topic: str, key: str, value: str) -> None:
    admin = make_admin(kafka)
    for f in admin.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, topic, incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])]).values():
        f.result(10)


def test_topics_carry_the_table(kafka, topics):
    table = load_table()
    assert topic_config(kafka, topics.events)["max.message.bytes"] == "67108864"
    assert topic_config(kafka, topics.name("forwarderStorage"))["cleanup.policy"] == "compact"
    assert topic_config(kafka, topics.run_info)["retention.ms"] == \
        table["runInfo"].configs["retention.ms"]


def test_drift_is_reported_then_fixed(kafka, topics):
    set_by_hand(kafka, topics.run_info, "retention.ms", "1000")
    table = load_table()
    table["events"] = replace(table["events"], partitions=2)
    plan = plan_topics(make_admin(kafka), topics, table)
    assert [p.topic for p in plan.grow] == [topics.events]
    assert plan.configs == {topics.run_info: {
        "retention.ms": ("1000", table["runInfo"].configs["retention.ms"])}}
    ensure_topics(kafka, topics, table)
    again = plan_topics(make_admin(kafka), topics, table)
    assert not again.changes and not again.refusals
    assert len(make_admin(kafka).list_topics(timeout=10).topics[topics.events].partitions) == 2


def test_what_kafka_cannot_do_is_refused_and_nothing_changes(kafka, topics):
    table = load_table()
    # the events topic was made with 1 partition: 2 then back to 1 is refused
    table["events"] = replace(table["events"], partitions=2)
    ensure_topics(kafka, topics, table)
    set_by_hand(kafka, topics.run_log, "retention.ms", "1000")
    table["events"] = replace(table["events"], partitions=1)
    with pytest.raises(TopicsRefused, match="cannot remove partitions"):
        ensure_topics(kafka, topics, table)
    assert topic_config(kafka, topics.run_log)["retention.ms"] == "1000"  # untouched
    table["events"] = replace(table["events"], partitions=2)
    table["sampleEnv"] = replace(table["sampleEnv"], configs={
        **table["sampleEnv"].configs, "retention.ms": "not-a-number"})
    with pytest.raises(TopicsRefused, match="Kafka refused"):
        ensure_topics(kafka, topics, table)
    assert topic_config(kafka, topics.run_log)["retention.ms"] == "1000"


def test_storage_is_compacted_and_keyless_config_commands_still_land(kafka, topics):
    stream = Stream("IN:X:TEMP", "ca", "f144", topics.sample_env)
    Storage(kafka, topics.name("forwarderStorage")).save({stream: True})
    assert read_stored(kafka, topics.name("forwarderStorage")) == {stream: True}
    deliver(make_producer(kafka), topics.forwarder_config, b"keyless fc00", timeout=10)


def test_the_command_line(kafka, topics, tmp_path):
    config = write_config(InstrumentConfig(name=topics.instrument, broker=kafka.bootstrap,
                                           data_dir=tmp_path), tmp_path / "config.toml")

    def run(*action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "launcher", "topics", *action,
                               "--config", str(config)], capture_output=True, text=True,
                              timeout=60)

    ok = run("check")
    assert ok.returncode == 0 and "no drift" in ok.stdout, ok.stdout + ok.stderr
    assert "nothing to do" in run("ensure").stdout
    set_by_hand(kafka, topics.sample_env, "retention.ms", "1000")
    drift = run("check")
    assert drift.returncode == 1 and f"{topics.sample_env}: retention.ms 1000 ->" in drift.stdout
    fixed = run("ensure")
    assert fixed.returncode == 0 and "done: 1 change(s)" in fixed.stdout, fixed.stderr
    assert run("check").returncode == 0
    (tmp_path / "topics.toml").write_text("[events]\npartitions = 0\n")
    bad = run("ensure")
    assert bad.returncode == 1 and "partitions must be a whole number >= 1" in bad.stderr


def test_doctor_without_a_broker_fails_at_once(tmp_path):
    config = write_config(InstrumentConfig(name="NOBRK", data_dir=tmp_path),
                          tmp_path / "config.toml")
    out = subprocess.run([sys.executable, "-m", "launcher", "doctor", "--config", str(config),
                          "--broker", "127.0.0.1:1", "--service", "forwarder=127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("FAIL broker") and "127.0.0.1:1: no answer" in lines[0]
    assert lines[1].startswith("FAIL forwarder") and lines[2].startswith("OK   data disk")
