"""The just-bin-it side of the live view, on Kafka: JSON commands on a command topic
(default <INST>_liveCommands), answers to those with a msg_id on a response topic
(<INST>_liveResponses: {"msg_id", "response": "ACK"|"ERR", "message"}), an x5f2 heartbeat
(<INST>_liveStatus), and the histograms, hs00 or hs01, on the topics each config names,
every PUBLISH_INTERVAL_S while counting (just-bin-it's 500 ms).

One thread owns all of it (commands, the session's consumer, the producer): a new config
replaces the session between two messages, never under one. A command is checked whole
(topics included) before it replaces anything, so a bad one is answered ERR and the
histograms counting go on. Commands are read from the topic's end at start-up, as
just-bin-it does: a restarted live view waits for NICOS to configure it again."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from streaming_data_types.status_x5f2 import serialise_x5f2

import datastream
from datastream.kafka_client import KafkaSettings, make_consumer, make_producer, offsets_since
from liveview.jbi_commands import Command, CommandError, msg_id_of, parse_command
from liveview.jbi_session import JbiSession

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 0.5
HEARTBEAT_INTERVAL_S = 2.0
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class JbiTopics:
    commands: str
    responses: str
    status: str


class JbiService:
    def __init__(self, kafka: KafkaSettings, topics: JbiTopics, service_id: str) -> None:
        self.kafka, self.topics, self.service_id = kafka, topics, service_id
        self.session: JbiSession | None = None
        self.commands_handled = 0
        self.commands_refused = 0
        self._data: Consumer | None = None
        # the session's consumer came back empty last time: it has read what there is, so
        # a stop already passed by the clock may finish it (not while it catches up)
        self._caught_up = False
        self._producer: Producer | None = None

    # -- the loop --
    def run(self, stop: threading.Event) -> None:
        producer = self._producer = make_producer(self.kafka)
        commands = make_consumer(self.kafka)
        try:
            self._assign_commands(commands, stop)
            next_publish = next_beat = 0.0
            failures = 0
            while not stop.is_set():
                # nothing a command, a data message or the broker does ends this thread: the
                # live view exits when it does (an OverflowError here once took it down)
                try:
                    self._step(commands)
                    now = time.monotonic()
                    if now >= next_publish:
                        next_publish = now + PUBLISH_INTERVAL_S
                        self._publish()
                    if now >= next_beat:
                        next_beat = now + HEARTBEAT_INTERVAL_S
                        self._heartbeat()
                    producer.poll(0)
                except Exception:
                    failures += 1
                    log.log(logging.ERROR if failures <= 3 else logging.DEBUG,
                            "the just-bin-it loop failed (going on)", exc_info=True)
                    stop.wait(0.1)  # not a hot loop if it fails every time
        finally:
            self._close_data()
            commands.close()
            producer.flush(5)

    def _step(self, commands: Consumer) -> None:
        idle = self._data is None
        for msg in commands.consume(num_messages=10, timeout=0.1 if idle else 0):
            if msg.error():
                log.warning("command topic: %s", msg.error())
                continue
            self.handle(msg.value() or b"")
        if self._data is None or self.session is None:
            return
        batch = self._data.consume(num_messages=500, timeout=0.05)
        self._caught_up = not batch
        for msg in batch:
            if msg.error():
                log.warning("data topic: %s", msg.error())
                continue
            try:
                self.session.add(msg.topic(), msg.value() or b"")
            except Exception as exc:  # one bad message never stops the histograms
                self.session.skipped += 1
                log.warning("skipped a message on %s at %d: %s", msg.topic(), msg.offset(),
                            exc)

    def _assign_commands(self, consumer: Consumer, stop: threading.Event) -> None:
        """The command topic from its end; retried until the topic is there."""
        failures = 0
        while not stop.is_set():
            try:
                parts = _partitions(consumer, self.topics.commands)
                consumer.assign([TopicPartition(self.topics.commands, p,
                                                consumer.get_watermark_offsets(
                                                    TopicPartition(self.topics.commands, p),
                                                    timeout=10)[1]) for p in parts])
                log.info("just-bin-it commands on %s, answers on %s", self.topics.commands,
                         self.topics.responses)
                return
            except (KafkaException, LookupError) as exc:
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "cannot read the command topic yet (retrying): %s", exc)
                stop.wait(2)

    # -- commands --
    def handle(self, payload: bytes) -> None:
        """Carry out one command and answer it (ACK, or ERR with the reason). Whatever it
        raises is the command's: answered ERR, never the end of the thread."""
        try:
            command = parse_command(payload)
            if command.cmd == "config":
                self._configure(command)
            elif command.cmd == "stop":
                if self.session is not None:
                    self.session.finish()
                    self._publish()
            elif self.session is not None:  # reset_counts
                self.session.clear()
        except Exception as exc:
            self.commands_refused += 1
            expected = isinstance(exc, CommandError | KafkaException | LookupError)
            log.log(logging.WARNING, "refused a command: %s", exc, exc_info=not expected)
            reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            self._respond(msg_id_of(payload), reason[:1000])
            return
        self.commands_handled += 1
        log.info("command %s carried out", command.cmd)
        self._respond(command.msg_id, None)

    def _configure(self, command: Command) -> None:
        assert self._producer is not None
        listed = self._producer.list_topics(timeout=10).topics
        for name in ({t for h in command.histograms for t in h.data_topics}
                     | {h.topic for h in command.histograms}):
            if name not in listed or listed[name].error is not None:
                raise LookupError(f"topic {name} not found on the broker (this cluster "
                                  "does not create topics on use)")
        session = JbiSession(command, time.time_ns() // NS_PER_MS)
        data = make_consumer(self.kafka)
        try:
            wanted = [TopicPartition(t, p, session.start_ms) for t in session.data_topics
                      for p in sorted(listed[t].partitions)]
            data.assign(offsets_since(data, wanted))
        except Exception:
            data.close()
            raise
        self._close_data()  # the old histograms stop only once the new ones can start
        self.session, self._data, self._caught_up = session, data, False
        log.info("counting %d histogram(s) from %s from %d ms%s",
                 len(session.histograms), ", ".join(session.data_topics), session.start_ms,
                 f" to {session.stop_ms} ms" if session.stop_ms is not None else "")

    def _respond(self, msg_id: str | None, error: str | None) -> None:
        if msg_id is None or self._producer is None:
            return  # just-bin-it answers only commands that carry a msg_id
        answer: dict[str, object] = {"msg_id": msg_id, "response": "ERR" if error else "ACK"}
        if error:
            answer["message"] = error
        try:
            self._producer.produce(self.topics.responses, json.dumps(answer).encode())
        except (BufferError, KafkaException) as exc:
            log.warning("an answer to %s was not sent: %s", msg_id, exc)
        self._producer.poll(0)

    # -- output --
    def _publish(self) -> None:
        session = self.session
        if session is None or self._producer is None:
            return
        if self._caught_up:
            session.check_clock(time.time_ns() // NS_PER_MS)
        for topic, payload in session.messages(time.time_ns()):
            try:
                self._producer.produce(topic, payload)
            except (BufferError, KafkaException) as exc:  # a full queue, a broker's refusal:
                log.warning("a histogram for %s was not sent: %s", topic, exc)  # next time
        if session.done and self._data is not None:
            log.info("histograms %s: %s", [h.spec.id for h in session.histograms],
                     session.state)
            self._close_data()

    def _heartbeat(self) -> None:
        if self._producer is None:
            return
        session = self.session
        status = {"state": session.state if session else "IDLE",
                  "histograms": [h.spec.id for h in session.histograms] if session else [],
                  "events": session.events if session else 0,
                  "skipped": session.skipped if session else 0,
                  "commands_refused": self.commands_refused}
        self._producer.produce(self.topics.status, serialise_x5f2(
            "datastream-liveview", datastream.__version__, self.service_id,
            socket.gethostname(), os.getpid(), int(HEARTBEAT_INTERVAL_S * 1000),
            json.dumps(status)))

    def _close_data(self) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise LookupError(f"topic {topic} not found on the broker")
    return sorted(metadata.partitions)
