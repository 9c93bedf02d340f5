"""A real 3-node KRaft cluster on loopback (replication 3, min.insync.replicas 2): the events
partition's leader killed (-9) mid-run several times, then two of the three nodes down for
20 s. Producers (idempotent, acks=all) wait; the file holds every event once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from datastream.kafka_client import KafkaSettings, make_producer
from datastream.topic_table import load_table
from datastream.topics import InstrumentTopics
from launcher.broker import embedded
from launcher.topic_ensure import TopicsRefused, ensure_topics
from tests.conftest import free_port, wait_until
from tests.faults.conftest import MS, FrameSource, check_events_file, stop_as_a_dae
from tests.integration.conftest import writer_process
from tests.integration.test_filewriter_kafka import answers_for, start_run, wait_wrdn

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[list[embedded.BrokerConfig]]:
    nodes = embedded.cluster_nodes(tmp_path_factory.mktemp("cluster"), 3,
                                   port=free_port(block=6), heap="512m")
    embedded.start_cluster(nodes)
    try:
        yield nodes
    finally:
        # the whole cluster at once: a node's controlled shutdown can wait out the timeout
        # for a quorum that is going too (measured 30 s in CI); its data is thrown away
        embedded.stop_cluster(nodes, timeout=5)


def kill(node: embedded.BrokerConfig) -> None:
    pid = embedded.running_pid(node)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: embedded.running_pid(node) is None, 10, f"node {node.node_id} gone")


def leader(kafka: KafkaSettings, topic: str) -> int:
    md = AdminClient(kafka.common()).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[0].leader


def test_leader_kills_and_a_two_node_outage_lose_nothing(cluster, tmp_path):
    kafka = KafkaSettings(embedded.bootstrap_list(cluster))
    topics = InstrumentTopics(f"CL{uuid.uuid4().hex[:4].upper()}")
    ensure_topics(kafka, topics)
    by_id = {n.node_id: n for n in cluster}
    producer = make_producer(kafka, enable_idempotence=True, acks="all")
    job_id = str(uuid.uuid4())
    with writer_process(kafka, topics, tmp_path):
        frames = FrameSource(kafka, topics.events, period_ms=20, events=100).start()
        start_ms = time.time_ns() // MS
        start_run(producer, topics, start_ms, job_id, "CLUSTER.nxs")
        wait_until(lambda: answers_for(kafka, topics.run_info, job_id), 30, "answ 201")
        for _ in range(3):
            time.sleep(1.5)
            node = by_id[leader(kafka, topics.events)]
            kill(node)
            time.sleep(2.0)
            embedded.start(node)
        time.sleep(1.0)
        current = leader(kafka, topics.events)
        other = next(n for n in cluster if n.node_id != current)
        for node in (by_id[current], other):  # the leader and one more
            kill(node)
        time.sleep(20)  # no quorum, no ISR of two: producers wait
        embedded.start_cluster(cluster)
        time.sleep(2.0)
        # every frame delivered, none failed; none at or after the stop
        stop_ms = stop_as_a_dae(frames, producer, topics.run_info, job_id, timeout=60)
        done = wait_wrdn(kafka, topics.run_info, job_id, timeout=90)
    assert not done.error_encountered, done.message
    assert frames.failed == 0
    print(f"delivery reports restamped: {frames.restamped}")
    expected = frames.events_between(start_ms * MS, stop_ms * MS)
    check_events_file(tmp_path / "CLUSTER.nxs", expected, distinct_ids=True,
                      explain=lambda ids: frames.explain(ids, start_ms * MS, stop_ms * MS))


def test_topics_ensure_replicates_three_times_on_three_nodes(cluster):
    """"auto" replication on the three-node cluster: 3 replicas, min.insync.replicas 2; a table
    asking for more replicas than brokers is refused and changes nothing."""
    kafka = KafkaSettings(embedded.bootstrap_list(cluster))
    topics = InstrumentTopics(f"CR{uuid.uuid4().hex[:4].upper()}")
    plan = ensure_topics(kafka, topics)
    assert len(plan.create) == len(topics.all())
    admin = AdminClient(kafka.common())
    md = admin.list_topics(timeout=10).topics[topics.events]
    assert len(md.partitions[0].replicas) == 3
    [configs] = [f.result(10) for f in admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topics.events)]).values()]
    assert configs["min.insync.replicas"].value == "2"
    table = load_table()
    table["runLog"] = replace(table["runLog"], replication=4)
    refused = InstrumentTopics(f"CX{uuid.uuid4().hex[:4].upper()}")
    with pytest.raises(TopicsRefused, match="replication 4 asked, the cluster has 3"):
        ensure_topics(kafka, refused, table)
    assert not set(refused.all()) & set(admin.list_topics(timeout=10).topics)
