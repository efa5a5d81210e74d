"""The consumer loop notices a group that keeps refusing its commits, and a partition that
stalls while facts wait on it; a loop stuck in a call can be abandoned (no broker needed)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, RebalanceInProgressError

from shared.events import to_kafka
from shared.fact_signing import FactKeys
from shared.inbox import ConsumerLoop, MembershipStuck
from tests.integration.shared.tiny_service import numbered_event

TOPIC = "caretrail.records.v1"
PARTITION = TopicPartition(TOPIC, 0)


class IdleConsumer:
    """Holds one partition, at `position` of a log that ends at `end`, and hands over nothing."""

    def __init__(self, *, position: int = 0, end: int = 0) -> None:
        self.offset = position
        self.end = end
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def subscribe(self, topics: list[str]) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict:
        return {tp: self.end for tp in partitions}

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        return self.offset

    def poll(self, timeout_ms: int) -> dict:
        time.sleep(0.01)
        return {}

    def close(self, autocommit: bool, timeout_ms: int) -> None:
        self.closed = True


class RefusingConsumer(IdleConsumer):
    """Hands over a message per poll and refuses every commit, as a member out of its group."""

    def __init__(self, refusal: Exception) -> None:
        super().__init__()
        self.refusal = refusal
        self.commit_deadlines: list[int | None] = []

    def poll(self, timeout_ms: int) -> dict:
        record = to_kafka(numbered_event("p-1", self.offset))
        self.offset += 1
        self.end = self.offset
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

    def commit(self, offsets: dict, timeout_ms: int | None = None) -> None:
        self.commit_deadlines.append(timeout_ms)
        raise self.refusal


def loop_over(consumer: IdleConsumer, **options: Any) -> ConsumerLoop:
    return ConsumerLoop(
        consumer="test",
        kafka_consumer=consumer,
        producer=None,
        sessions=lambda: None,  # type: ignore[arg-type,return-value]
        handlers={},  # nothing to handle: only the commits matter here
        topics=[TOPIC],
        fact_keys=FactKeys.from_directory(),
        stuck_after_seconds=0.5,
        stalled_after_seconds=0.5,
        **options,
    )


def test_a_member_whose_commits_keep_being_refused_gives_up_its_consumer():
    consumer = RefusingConsumer(RebalanceInProgressError("rebalancing"))
    with pytest.raises(MembershipStuck):
        loop_over(consumer).run()
    assert consumer.closed


def test_every_commit_has_a_deadline():
    # Without one, kafka-python 3.0.12 retries a commit for as long as the coordinator is away.
    consumer = RefusingConsumer(KafkaConnectionError())
    with pytest.raises(KafkaConnectionError):
        loop_over(consumer).poll_once()
    assert consumer.commit_deadlines and None not in consumer.commit_deadlines


def test_a_broker_away_is_waited_for_not_taken_for_a_stuck_membership():
    consumer = RefusingConsumer(KafkaConnectionError())
    loop = loop_over(consumer)
    stopped = threading.Timer(3.0, loop.stop.set)
    stopped.start()
    loop.run()  # returns when stopped, having raised nothing
    assert consumer.offset >= 2 and consumer.closed


def test_a_member_whose_partition_never_moves_while_facts_wait_gives_up_its_consumer():
    consumer = IdleConsumer(position=5, end=9)
    with pytest.raises(MembershipStuck, match="records.v1/0 has stayed at 5"):
        loop_over(consumer).run()
    assert consumer.closed


class CutOffConsumer(IdleConsumer):
    """Reads its log's end once, then no request of it answers again."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.end_reads = 0

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict:
        self.end_reads += 1
        if self.end_reads > 1:
            raise KafkaTimeoutError("no answer")
        return super().end_offsets(partitions, timeout_ms)


def test_a_member_cut_off_from_its_broker_with_facts_waiting_gives_up_its_consumer():
    consumer = CutOffConsumer(position=5, end=9)
    with pytest.raises(MembershipStuck, match="records.v1/0 has stayed at 5"):
        loop_over(consumer).run()
    assert consumer.end_reads > 1 and consumer.closed


def test_a_quiet_member_with_nothing_waiting_keeps_its_consumer():
    consumer = IdleConsumer(position=9, end=9)
    loop = loop_over(consumer)
    stopped = threading.Timer(2.0, loop.stop.set)
    stopped.start()
    loop.run()  # returns when stopped, having raised nothing
    assert consumer.closed


class BlindConsumer(CutOffConsumer):
    """Cut off after its first answers: it can no longer tell its log's end, nor its position."""

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        if self.end_reads > 1:
            raise KafkaTimeoutError("no answer")
        return super().position(partition, timeout_ms)


def test_a_member_that_cannot_tell_its_position_while_facts_wait_gives_up_its_consumer():
    consumer = BlindConsumer(position=5, end=9)
    loop = loop_over(consumer)
    threading.Timer(5.0, loop.stop.set).start()  # a loop that never judges it returns instead
    with pytest.raises(MembershipStuck, match="records.v1/0 has stayed at 5"):
        loop.run()
    assert consumer.closed


def test_a_member_cut_off_after_it_caught_up_learns_from_a_fresh_client_that_facts_wait():
    consumer = CutOffConsumer(position=5, end=5)  # caught up when it could last tell
    asked: list[list[TopicPartition]] = []

    def ends_elsewhere(partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        asked.append(partitions)
        return {tp: 9 for tp in partitions}  # facts came since, which it does not read

    loop = loop_over(consumer, ends_elsewhere=ends_elsewhere)
    threading.Timer(5.0, loop.stop.set).start()  # a loop that never judges it returns instead
    with pytest.raises(MembershipStuck, match="records.v1/0 has stayed at 5 .* ends at 9"):
        loop.run()
    assert asked and asked[0] == [PARTITION]


class HungConsumer(RefusingConsumer):
    """Its commit waits for an answer that never comes; closing it fails the wait, as closing
    kafka-python's client fails every wait pending on its IO loop."""

    def __init__(self) -> None:
        super().__init__(KafkaConnectionError("Event loop stopped"))
        self.closing = threading.Event()
        self.commits = 0

    def commit(self, offsets: dict, timeout_ms: int | None = None) -> None:
        self.commits += 1
        self.closing.wait()
        raise self.refusal

    def close(self, autocommit: bool, timeout_ms: int) -> None:
        self.closing.set()
        super().close(autocommit, timeout_ms)


def test_a_loop_hung_in_a_call_is_seen_from_another_thread_and_abandoned_for_good():
    consumer = HungConsumer()
    loop = loop_over(consumer)
    running = threading.Thread(target=loop.run)
    running.start()
    time.sleep(0.3)
    assert loop.calls.hung(time.monotonic(), after_seconds=0.2) == "commit has not returned in 0s"
    assert loop.calls.hung(time.monotonic(), after_seconds=60) is None

    loop.abandon()
    running.join(timeout=5)
    assert not running.is_alive() and consumer.closed
    assert consumer.commits == 1  # abandoned: it polled and committed nothing more
