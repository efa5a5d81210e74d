"""The consumer loop notices a group that keeps refusing its commits (no broker needed)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, RebalanceInProgressError

from shared.events import to_kafka
from shared.fact_signing import FactKeys
from shared.inbox import ConsumerLoop, MembershipStuck
from tests.integration.shared.tiny_service import numbered_event


class RefusingConsumer:
    """Hands over a message per poll and refuses every commit, as a member out of its group."""

    def __init__(self, refusal: Exception) -> None:
        self.refusal = refusal
        self.offset = 0
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def subscribe(self, topics: list[str]) -> None:
        pass

    def poll(self, timeout_ms: int) -> dict:
        record = to_kafka(numbered_event("p-1", self.offset))
        self.offset += 1
        message = SimpleNamespace(
            topic=record.topic,
            partition=0,
            offset=self.offset,
            timestamp=0,
            headers=record.headers,
            key=record.key,
            value=record.value,
        )
        return {TopicPartition(record.topic, 0): [message]}

    def commit(self, offsets: dict) -> None:
        raise self.refusal

    def close(self, autocommit: bool) -> None:
        self.closed = True


def loop_over(consumer: RefusingConsumer) -> ConsumerLoop:
    return ConsumerLoop(
        consumer="test",
        kafka_consumer=consumer,
        producer=None,
        sessions=lambda: None,  # type: ignore[arg-type,return-value]
        handlers={},  # nothing to handle: only the commits matter here
        topics=["caretrail.records.v1"],
        fact_keys=FactKeys.from_directory(),
        stuck_after_seconds=0.5,
    )


def test_a_member_whose_commits_keep_being_refused_gives_up_its_consumer():
    consumer = RefusingConsumer(RebalanceInProgressError("rebalancing"))
    with pytest.raises(MembershipStuck):
        loop_over(consumer).run()
    assert consumer.closed


def test_a_broker_away_is_waited_for_not_taken_for_a_stuck_membership():
    consumer = RefusingConsumer(KafkaConnectionError())
    loop = loop_over(consumer)
    stopped = threading.Timer(3.0, loop.stop.set)
    stopped.start()
    loop.run()  # returns when stopped, having raised nothing
    assert consumer.offset >= 2 and consumer.closed
