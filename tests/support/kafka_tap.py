"""Read what the system wrote to Kafka during a test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from shared.broker import make_producer
from shared.events import Event, from_kafka
from shared.kafka_access import client_options


class KafkaTap:
    """A consumer positioned at the end of `topics` when created: it sees only newer messages."""

    def __init__(
        self, bootstrap: str, *topics: str, isolation_level: str = "read_committed"
    ) -> None:
        # Committed messages by default, as every consumer reads them: relays publish in Kafka
        # transactions, and an aborted batch is not on the log (shared/relay_lease.py).
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            group_id=None,
            isolation_level=isolation_level,
            **client_options(),
        )
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before the test writes
            self._consumer.position(tp)
        self.messages: list[Any] = []

    def read(self, until: Callable[[list[Any]], bool], timeout_seconds: float = 20.0) -> list[Any]:
        """Raw messages, polling until `until(messages)` holds or the time is up."""
        deadline = time.monotonic() + timeout_seconds
        while not until(self.messages) and time.monotonic() < deadline:
            for batch in self._consumer.poll(timeout_ms=200).values():
                self.messages.extend(batch)
        return self.messages

    def events(
        self,
        count: int | None = None,
        *,
        where: Callable[[Event], bool] = lambda e: True,
        timeout_seconds: float = 20.0,
        settle_seconds: float = 0.0,
    ) -> list[Event]:
        """Events matching `where`: wait for `count` of them (then `settle_seconds` more, to
        catch any extra), or read for `timeout_seconds` when no count is given."""

        def matching(messages: list[Any]) -> list[Event]:
            parsed = [from_kafka(m.headers, m.key, m.value) for m in messages]
            return [e for e in parsed if where(e)]

        if count is None:
            self.read(lambda _: False, timeout_seconds)
        else:
            self.read(lambda ms: len(matching(ms)) >= count, timeout_seconds)
            if settle_seconds:
                self.read(lambda _: False, settle_seconds)
        return matching(self.messages)

    def close(self) -> None:
        self._consumer.close()


def start_group_at_end(bootstrap: str, group: str, *topics: str) -> None:
    """Commit offsets at the current end of `topics` for consumer group `group`, so the group
    handles only what is written from now on (the shared test broker holds other tests' events)."""
    from kafka import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        **client_options(),
    )
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(offset, None, -1) for tp, offset in ends.items()})
    finally:
        consumer.close()


def write_one(bootstrap: str, topic: str) -> None:
    """Write one message to `topic` as this process's principal (raises if refused)."""
    producer = make_producer(bootstrap)
    try:
        producer.send(topic, key=b"k", value=b"{}").get(timeout=20)
    finally:
        producer.close(timeout=5)
