"""Waits until a broker serves in its cluster (run by the kafka role after a broker starts or
restarts): the admin logs in, the broker is among the cluster's live brokers and every
partition has all its replicas in sync. A rolling restart takes the next broker down only
then, so no partition is left with fewer copies than min.insync.replicas. Its settings, the
admin's password included, come on standard input as JSON in base64; prints what it saw as
JSON; exit 1 if the time runs out."""

from __future__ import annotations

import base64
import json
import sys
import time

from confluent_kafka import KafkaException

from datastream.kafka_client import KafkaSettings, make_admin


def main() -> int:
    given = json.loads(base64.b64decode(sys.stdin.read()))
    admin = make_admin(KafkaSettings(
        given["bootstrap"], security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
        sasl_username=given["admin_user"], sasl_password=given["admin_password"],
        ssl_cafile=given["cafile"]))
    deadline = time.monotonic() + float(given.get("timeout", 300))
    seen: dict[str, object] = {}
    while True:
        try:
            metadata = admin.list_topics(timeout=10)
            lagging = sorted(f"{topic}-{partition}"
                             for topic, about in metadata.topics.items()
                             for partition, replicas in about.partitions.items()
                             if set(replicas.isrs) != set(replicas.replicas))
            seen = {"brokers": sorted(metadata.brokers), "lagging": lagging[:20]}
            if int(given["node_id"]) in metadata.brokers and not lagging:
                print(json.dumps({"in_sync": True, **seen}))
                return 0
        except KafkaException as exc:  # not serving yet, or refusing the admin
            seen = {"error": str(exc)}
        if time.monotonic() > deadline:
            print(json.dumps({"in_sync": False, **seen}))
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
