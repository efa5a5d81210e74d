"""The stall watch reads a real consumer as it assumes: caught up means position == end, behind
commit markers, aborted transactions and a transaction still open; facts left unread stall."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

from shared.broker import make_consumer, make_producer
from shared.events import TOPIC_NOTIFY
from shared.stall_watch import StallWatch
from tests.support.kafka_tap import start_group_at_end


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator:
    producer = make_producer(kafka_bootstrap, transactional_id=f"stall-{uuid.uuid4().hex}")
    producer.init_transactions()
    yield producer
    producer.close(timeout=5)


@pytest.fixture
def member(kafka_bootstrap: str) -> Iterator[KafkaConsumer]:
    group = f"stall-{uuid.uuid4().hex[:8]}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_NOTIFY)
    consumer = make_consumer(kafka_bootstrap, group)
    consumer.subscribe([TOPIC_NOTIFY])
    yield consumer
    consumer.close(autocommit=False)


def read_all(consumer: KafkaConsumer) -> int:
    return sum(
        len(messages) for _ in range(6) for messages in consumer.poll(timeout_ms=500).values()
    )


def stalls_over_a_minute(consumer: KafkaConsumer) -> list[TopicPartition]:
    partitions = sorted(consumer.assignment())
    ends = consumer.end_offsets(partitions)
    positions = {tp: consumer.position(tp) for tp in partitions}
    watch = StallWatch(stalled_after_seconds=30)
    watch.observe(0, positions, ends)
    return [stall.partition for stall in watch.observe(60, positions, ends)]


def send_in_transaction(producer, count: int, *, commit: bool) -> None:
    producer.begin_transaction()
    for _ in range(count):
        producer.send(TOPIC_NOTIFY, key=b"p", value=b"{}").get(timeout=10)
    if commit:
        producer.commit_transaction()
    else:
        producer.abort_transaction()


def test_a_member_that_read_everything_readable_is_never_stalled(producer, member):
    read_all(member)  # joins the group
    send_in_transaction(producer, 3, commit=True)
    assert read_all(member) == 3
    assert stalls_over_a_minute(member) == []  # the commit marker is behind the position

    send_in_transaction(producer, 2, commit=False)
    assert read_all(member) == 0
    assert stalls_over_a_minute(member) == []  # an aborted batch is stepped over

    producer.begin_transaction()
    producer.send(TOPIC_NOTIFY, key=b"p", value=b"{}").get(timeout=10)
    assert read_all(member) == 0
    assert stalls_over_a_minute(member) == []  # open: not readable yet, so not waiting
    producer.abort_transaction()


def test_facts_left_unread_under_a_position_that_does_not_move_are_a_stall(producer, member):
    read_all(member)
    send_in_transaction(producer, 3, commit=True)  # and no poll reads them
    assert [tp.topic for tp in stalls_over_a_minute(member)] == [TOPIC_NOTIFY]
