"""Where a consumer starts reading from a time (datastream.kafka_client.offsets_since): a
partition with nothing that recent starts at its end as it was before the lookup, so a
message appended while the lookup ran is read, not skipped."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from datastream.kafka_client import offsets_since


class _AppendingConsumer:
    """A partition of 5 messages, all older than the time asked for; a sixth is appended
    while offsets_for_times answers (as a DAE's first frame can be)."""

    def __init__(self) -> None:
        self.end = 5

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, self.end

    def offsets_for_times(self, wanted, timeout=None):
        self.end += 1  # appended meanwhile, with a timestamp after the time asked for
        return [TopicPartition(tp.topic, tp.partition, -1) for tp in wanted]


def test_a_message_appended_during_the_lookup_is_not_skipped():
    (tp,) = offsets_since(_AppendingConsumer(), [TopicPartition("t_events", 0, 1_000)])
    assert tp.offset == 5


def test_the_callers_ends_are_used_when_given():
    (tp,) = offsets_since(_AppendingConsumer(), [TopicPartition("t_events", 0, 1_000)],
                          ends={("t_events", 0): 3})
    assert tp.offset == 3
