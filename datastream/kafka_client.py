"""One place that turns a broker address (and optional SASL/SSL) into confluent-kafka clients."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

# ev44 messages of 100k events are ~800 kB; leave room for bigger frames. The broker, the
# producers and the consumers must all agree on this, or large messages vanish with an error
# only the producer's delivery callback sees.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)  # never in a log
    ssl_cafile: str | None = None
    # the client's own key and certificate (PKCS#12), for clusters that require client TLS
    ssl_keystore: str | None = None
    ssl_keystore_password: str | None = field(default=None, repr=False)

    def common(self) -> dict[str, object]:
        conf: dict[str, object] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            # a broker back after an outage is found within 2 s, not librdkafka's 10 (its
            # back-off doubles to that between failed connects): the writer had files to
            # stop 9 s after the cluster was back (tests/faults/test_cluster_faults.py)
            "reconnect.backoff.max.ms": 2000,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password or ""
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_keystore:
            conf["ssl.keystore.location"] = self.ssl_keystore
            conf["ssl.keystore.password"] = self.ssl_keystore_password or ""
        return conf


def make_producer(settings: KafkaSettings, stats_cb: Callable[[str], None] | None = None,
                  **overrides: object) -> Producer:
    """`stats_cb`: librdkafka's statistics JSON, every `statistics_interval_ms`."""
    conf = settings.common() | {
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "linger.ms": 5,
        "queue.buffering.max.kbytes": 512 * 1024,
    }
    conf.update({k.replace("_", "."): v for k, v in overrides.items()})
    if stats_cb is not None:
        conf["stats_cb"] = stats_cb
    return Producer(conf)


def make_consumer(settings: KafkaSettings, group_id: str | None = None,
                  **overrides: object) -> Consumer:
    conf = settings.common() | {
        # a consumer that only uses assign() still needs a group id in librdkafka
        "group.id": group_id or f"datastream-{os.getpid()}-{id(settings)}",
        "enable.auto.commit": group_id is not None,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": MAX_MESSAGE_BYTES,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
        "receive.message.max.bytes": MAX_MESSAGE_BYTES + 1024 * 1024,
        "enable.partition.eof": False,
    }
    conf.update({k.replace("_", "."): v for k, v in overrides.items()})
    return Consumer(conf)


def make_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(settings.common())


def add_kafka_arguments(parser: argparse.ArgumentParser, default_broker: str | None) -> None:
    group = parser.add_argument_group("Kafka")
    group.add_argument(
        "--broker",
        default=os.environ.get("DATASTREAM_BROKER", default_broker),
        help="bootstrap host:port of the Kafka cluster (env DATASTREAM_BROKER)",
    )
    group.add_argument("--security-protocol", default=os.environ.get(
        "DATASTREAM_SECURITY_PROTOCOL", "PLAINTEXT"),
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    group.add_argument("--sasl-mechanism", default=os.environ.get("DATASTREAM_SASL_MECHANISM"),
                       choices=[None, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    group.add_argument("--sasl-username", default=os.environ.get("DATASTREAM_SASL_USERNAME"))
    group.add_argument(
        "--sasl-password-env", default="DATASTREAM_SASL_PASSWORD",
        help="name of the environment variable holding the SASL password (never on argv)",
    )
    group.add_argument("--ssl-cafile", default=os.environ.get("DATASTREAM_SSL_CAFILE"),
                       help="PEM certificate(s) of the authority that signed the brokers' "
                            "(env DATASTREAM_SSL_CAFILE)")
    group.add_argument("--ssl-keystore", default=os.environ.get("DATASTREAM_SSL_KEYSTORE"),
                       help="PKCS#12 file with this client's key and certificate, for "
                            "clusters that require client TLS (env DATASTREAM_SSL_KEYSTORE)")
    group.add_argument(
        "--ssl-keystore-password-env", default="DATASTREAM_SSL_KEYSTORE_PASSWORD",
        help="name of the environment variable holding the keystore's password")


def settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    if not args.broker:
        raise SystemExit("no Kafka broker given: pass --broker host:port")
    return KafkaSettings(
        bootstrap=args.broker,
        security_protocol=args.security_protocol,
        sasl_mechanism=args.sasl_mechanism,
        sasl_username=args.sasl_username,
        sasl_password=os.environ.get(args.sasl_password_env),
        ssl_cafile=args.ssl_cafile,
        ssl_keystore=args.ssl_keystore,
        ssl_keystore_password=os.environ.get(args.ssl_keystore_password_env),
    )


class DeliveryError(RuntimeError):
    pass


def deliver(producer: Producer, topic: str, value: bytes, key: bytes | None = None,
            timestamp_ms: int | None = None, timeout: float = 10.0) -> None:
    """Produce one message and wait until the broker has it; raise DeliveryError if not."""
    outcome: list[object] = []

    def on_delivery(err: object, _msg: object) -> None:
        outcome.append(err)

    kwargs: dict[str, object] = {"on_delivery": on_delivery}
    if key is not None:
        kwargs["key"] = key
    if timestamp_ms is not None:
        kwargs["timestamp"] = timestamp_ms
    try:
        producer.produce(topic, value, **kwargs)
    except (BufferError, KafkaException) as exc:
        raise DeliveryError(f"could not queue a message for {topic}: {exc}") from exc
    producer.flush(timeout)
    if not outcome:
        raise DeliveryError(f"no acknowledgement from the broker for {topic} within {timeout}s")
    if outcome[0] is not None:
        raise DeliveryError(f"the broker refused the message for {topic}: {outcome[0]}")


def offsets_since(consumer: Consumer, wanted: list[TopicPartition], timeout: float = 10,
                  ends: dict[tuple[str, int], int] | None = None) -> list[TopicPartition]:
    """Where to read each partition from a time: each TopicPartition's offset holds a
    timestamp (ms); the answer holds the first offset at or after it, or, for a partition
    with nothing that recent, its end (all it will hold of that time is still to come):
    `ends` if the caller took them, else taken here. Either way they are taken before the
    lookup: an end taken after it would skip a message appended between the two (a run's
    first frames, sent as the live view seeks to the run's start)."""
    if ends is None:
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(
            TopicPartition(tp.topic, tp.partition), timeout=timeout)[1] for tp in wanted}
    found = consumer.offsets_for_times(wanted, timeout=timeout)
    for tp in found:
        if tp.offset < 0:
            tp.offset = ends[(tp.topic, tp.partition)]
    return found
