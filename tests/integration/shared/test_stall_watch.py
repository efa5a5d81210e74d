"""The stall watch reads a real consumer as it assumes: caught up means position == end, behind
commit markers, aborted transactions and a transaction still open; facts left unread stall.
And a worker replaces a member that stops fetching, or hangs in a call, so the facts waiting
for it take effect."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaConnectionError

import shared.worker
from shared.broker import log_ends, make_consumer, make_producer
from shared.config import Settings
from shared.events import TOPIC_NOTIFY, TOPIC_RECORDS
from shared.stall_watch import StallWatch
from shared.worker import Worker
from tests.integration.shared import tiny_service as tiny
from tests.integration.shared.test_consumer import produce, wait_for
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


def test_a_fresh_client_reads_the_ends_a_member_reads_even_behind_an_open_transaction(
    kafka_bootstrap, producer, member
):
    read_all(member)
    send_in_transaction(producer, 2, commit=True)
    producer.begin_transaction()
    producer.send(TOPIC_NOTIFY, key=b"p", value=b"{}").get(timeout=10)
    partitions = sorted(member.assignment())
    assert log_ends(kafka_bootstrap, partitions) == member.end_offsets(partitions)
    producer.abort_transaction()


class DeafMember:
    """A consumer that, once it holds partitions, silently never fetches them again: what
    kafka-python's stalled members look like from the outside."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def poll(self, timeout_ms: int) -> dict:
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(*assigned)
        return self._consumer.poll(timeout_ms=timeout_ms)

    def ready(self) -> bool:
        """Whether it joined, and went deaf."""
        return bool(self._consumer.paused())


class HungMember(DeafMember):
    """A consumer whose first commit never returns until it is closed: kafka-python 3.0.12
    waiting without a deadline for an answer that does not come (shared/stall_watch.py)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        super().__init__(consumer)
        self._closing = threading.Event()

    def poll(self, timeout_ms: int) -> dict:
        return self._consumer.poll(timeout_ms=timeout_ms)

    def ready(self) -> bool:
        """Whether it joined: the facts go to it."""
        return bool(self._consumer.assignment())

    def commit(self, offsets: dict, timeout_ms: int) -> None:
        self._closing.wait()
        raise KafkaConnectionError("Event loop stopped")

    def close(self, autocommit: bool, timeout_ms: int) -> None:
        self._closing.set()
        self._consumer.close(autocommit=autocommit, timeout_ms=timeout_ms)


def run_worker_until_applied(kafka_bootstrap, database_url, monkeypatch, first_member) -> int:
    """Start a worker whose first member is `first_member(consumer)`, publish five facts of a
    patient, and five more once the worker replaced that member; wait until all ten took
    effect once; answer how many members the worker made."""
    engine, sessions = tiny.setup(database_url)
    group = f"stall-{uuid.uuid4().hex[:8]}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    members: list[Any] = []

    def new_member(bootstrap: str, group_id: str) -> Any:
        member = make_consumer(bootstrap, group_id)
        members.append(first_member(member) if not members else member)
        return members[-1]

    monkeypatch.setattr(shared.worker, "make_consumer", new_member)
    worker = Worker(
        settings=Settings.from_env(
            "records", database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap
        ),
        engine=engine,
        consumer_group=group,
        topics=[TOPIC_RECORDS],
        handlers=tiny.HANDLERS,
        outbox_table=None,
        stalled_after_seconds=3,
        hung_after_seconds=3,
    )
    producer = make_producer(kafka_bootstrap)
    consuming = threading.Thread(target=worker._consume, args=(producer,))
    consuming.start()
    try:
        wait_for(lambda: bool(members and members[0].ready()))
        patient = f"pat-{uuid.uuid4()}"
        produce(kafka_bootstrap, *(tiny.numbered_event(patient, n) for n in range(1, 6)))
        # Each applied once: a second application of a version would show in the list.
        wait_for(lambda: tiny.applied_versions(sessions, patient) == [1, 2, 3, 4, 5], 60)
        wait_for(lambda: len(members) > 1, 60)  # the first member's successor works on
        produce(kafka_bootstrap, *(tiny.numbered_event(patient, n) for n in range(6, 11)))
        wait_for(lambda: tiny.applied_versions(sessions, patient) == list(range(1, 11)), 60)
        return len(members)
    finally:
        worker.stop.set()
        consuming.join(timeout=30)
        producer.close(timeout=5)
        engine.dispose()


def test_a_worker_replaces_a_member_that_stops_fetching_and_the_facts_take_effect_once(
    kafka_bootstrap, database_url, monkeypatch
):
    members = run_worker_until_applied(kafka_bootstrap, database_url, monkeypatch, DeafMember)
    assert members == 2  # the deaf member was replaced once, by one that fetches


def test_a_worker_leaves_a_member_hung_in_a_call_behind_and_the_facts_take_effect_once(
    kafka_bootstrap, database_url, monkeypatch
):
    members = run_worker_until_applied(kafka_bootstrap, database_url, monkeypatch, HungMember)
    assert members == 2  # the hung member was left behind once, for one that commits
