"""A real 3-node KRaft cluster on loopback (replication 3, min.insync.replicas 2): the events
partition's leader killed (-9) mid-run several times, then two of the three nodes down for
20 s. Producers (idempotent, acks=all) wait; the file holds every event once."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, PartitionMetadata, ResourceType

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

# The JVMs compile with C1 only: a node's start-up is mostly class loading and JIT work, and
# C2 doubled its CPU (5.5 s against 3 s a restart, measured) on two cores shared by three
# nodes, the writer and the frames; the load here (50 frames/s) never needs C2's code.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


class QuickFencingNode(embedded.BrokerConfig):
    """A node whose controller fences a dead incarnation after 3 s, not Kafka's 9: a node
    killed with -9 leaves no clean-shutdown epoch, so its restart is refused
    (DUPLICATE_BROKER_REGISTRATION) until the controller has given up on the dead one, and
    every restart here waited that out. Heartbeats every 500 ms: a live node misses six
    before it is fenced."""

    def server_properties(self) -> str:
        return (super().server_properties()
                + "broker.heartbeat.interval.ms=500\nbroker.session.timeout.ms=3000\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[list[embedded.BrokerConfig]]:
    nodes: list[embedded.BrokerConfig] = [
        QuickFencingNode(**{f.name: getattr(n, f.name) for f in dataclasses.fields(n)})
        for n in embedded.cluster_nodes(tmp_path_factory.mktemp("cluster"), 3,
                                        port=free_port(block=6), heap="512m")]
    with pytest.MonkeyPatch.context() as env:
        # read by the `java` launcher of every node started while the module runs (restarts
        # in the test too)
        env.setenv("JDK_JAVA_OPTIONS",
                   f"{os.environ.get('JDK_JAVA_OPTIONS', '')} {JVM_OPTIONS}".strip())
        embedded.start_cluster(nodes)
        try:
            yield nodes
        finally:
            # killed, not stopped: a node's controlled shutdown waits for a quorum that is
            # going too (5 s each time, measured), and the data is thrown away
            for node in nodes:
                pid = embedded.running_pid(node)
                if pid is not None:
                    os.killpg(pid, signal.SIGKILL)
            embedded.stop_cluster(nodes, timeout=5)  # reaps them, removes the pid files


def kill(node: embedded.BrokerConfig) -> None:
    pid = embedded.running_pid(node)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # the JVM's main thread is a zombie before its other threads have exited and closed its
    # sockets: a restart in between found its own ports taken
    wait_until(lambda: embedded.running_pid(node) is None
               and not embedded.port_open(node.port)
               and not embedded.port_open(node.controller_port), 10,
               f"node {node.node_id} gone")


def partition(admin: AdminClient, topic: str) -> PartitionMetadata:
    """Partition 0 of the topic as the cluster's metadata has it now (a new request)."""
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[0]


def leader(admin: AdminClient, topic: str) -> int:
    return partition(admin, topic).leader


def recovered(admin: AdminClient, topic: str, frames: FrameSource) -> None:
    """All three replicas in sync and frames delivered again: the next fault meets a whole
    cluster mid-run (waited for, where fixed sleeps used to guess it)."""
    wait_until(lambda: len(partition(admin, topic).isrs) == 3, 60, "three replicas in sync")
    since = len(frames.sent)  # the number of the next frame
    wait_until(lambda: since in frames.delivered, 60, f"frame {since} delivered")


def test_leader_kills_and_a_two_node_outage_lose_nothing(cluster, tmp_path):
    kafka = KafkaSettings(embedded.bootstrap_list(cluster))
    admin = AdminClient(kafka.common())
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
            recovered(admin, topics.events, frames)
            node = by_id[leader(admin, topics.events)]
            kill(node)
            # restarted at once, as a service manager would: the new incarnation cannot
            # register before the controller has fenced the dead one, so the leadership
            # moves to another node first, with the node still down
            proc = embedded.launch(node)
            wait_until(lambda node=node: leader(admin, topics.events) not in (node.node_id, -1),
                       60, f"a leader other than node {node.node_id}")
            embedded.wait_ready(node, 90, proc)
        recovered(admin, topics.events, frames)
        current = leader(admin, topics.events)
        other = next(n for n in cluster if n.node_id != current)
        for node in (by_id[current], other):  # the leader and one more
            kill(node)
        time.sleep(20)  # no quorum, no ISR of two: producers wait
        embedded.start_cluster(cluster)
        # frames sent once the cluster is back are in the run too
        after = len(frames.sent)
        wait_until(lambda: after in frames.delivered, 60, "a frame sent after the outage")
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
