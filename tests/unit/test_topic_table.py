"""The topic table: the shipped one, an instrument's changes, "auto" and clear errors."""

from __future__ import annotations

import pytest

from datastream.topic_table import TopicTableError, load_table
from datastream.topics import TOPIC_SUFFIXES


def test_the_shipped_table_covers_every_topic():
    table = load_table()
    assert set(table) == set(TOPIC_SUFFIXES)
    assert table["forwarderStorage"].configs["cleanup.policy"] == "compact"
    # keyless producers write these: a compacted topic would refuse their messages
    for keyless in ("runInfo", "forwarderConfig", "events", "sampleEnv"):
        assert table[keyless].configs["cleanup.policy"] == "delete"
    assert int(table["events"].configs["max.message.bytes"]) >= 64 * 1024 * 1024


@pytest.mark.parametrize(("brokers", "replication", "isr"), [(1, 1, "1"), (2, 2, "1"),
                                                              (3, 3, "2"), (5, 3, "2")])
def test_auto_replication_follows_the_cluster(brokers, replication, isr):
    spec = load_table()["events"]
    assert spec.replication_for(brokers) == replication
    assert spec.configs_for(brokers)["min.insync.replicas"] == isr


def test_an_instrument_changes_only_what_it_lists(tmp_path):
    own = tmp_path / "topics.toml"
    own.write_text('[defaults]\nreplication = 2\n[events]\npartitions = 4\n'
                   '"retention.ms" = 3600000\n')
    table = load_table(own)
    assert table["events"].partitions == 4 and table["events"].configs["retention.ms"] == "3600000"
    assert table["events"].configs["max.message.bytes"] == "67108864"  # kept from the shared one
    assert {s.replication for s in table.values()} == {2}
    assert table["runLog"].partitions == 1


@pytest.mark.parametrize(("text", "message"), [
    ("[evnets]\n", "unknown topic [evnets]"),
    ("[events]\npartitions = 0\n", "partitions must be a whole number >= 1"),
    ("[events]\npartitions = \"two\"\n", "partitions must be a whole number >= 1"),
    ("[events]\nreplication = \"three\"\n", "replication must be \"auto\""),
    ("[events]\n\"retention.ms\" = [1]\n", "must be a string or a number"),
    ("[events\n", "not valid TOML"),
])
def test_a_bad_table_names_the_file_and_the_entry(tmp_path, text, message):
    own = tmp_path / "topics.toml"
    own.write_text(text)
    with pytest.raises(TopicTableError) as caught:
        load_table(own)
    assert message in str(caught.value) and str(own) in str(caught.value)
