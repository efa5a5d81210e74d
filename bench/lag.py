"""Whether audit and notify keep up: their consumer groups' lag, and how long it takes to reach 0.

The lag of a group is what its consumers have not committed yet: the end offset of each
partition of the topics it reads minus the group's committed offset there (the beginning of
the partition where the group never committed: topics keep every event, and the consumers
start from the earliest). A fact still in an outbox is in no topic yet: the outboxes given
count their unpublished rows into the lag, so 0 means every fact so far has been processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from shared.events import FACT_TOPICS, TOPIC_ACCESS, TOPIC_CONSENT, TOPIC_RECORDS
from shared.kafka_access import client_options

# The groups that process every fact, with the topics each reads (services/*/worker.py).
FACT_GROUPS: Mapping[str, tuple[str, ...]] = {
    "audit": FACT_TOPICS,
    "notify": (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT),
}
POLL_SECONDS = 0.1


class ConsumerLag:
    """One admin client and one offset reader, kept open across polls (opening them costs
    more than a poll: a fresh pair per poll would blur a lag that clears in a second)."""

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, tuple[str, ...]] = FACT_GROUPS,
        outboxes: Sequence[Callable[[], int]] = (),
    ):
        servers = bootstrap.split(",")
        self._groups = groups
        self._outboxes = outboxes  # each answers its count of unpublished rows
        self._admin = KafkaAdminClient(bootstrap_servers=servers, **client_options())
        self._offsets = KafkaConsumer(bootstrap_servers=servers, **client_options())

    def __enter__(self) -> ConsumerLag:
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin.close()
        self._offsets.close()

    def total(self) -> int:
        """Unpublished outbox rows, then messages the groups have not committed yet."""
        return sum(pending() for pending in self._outboxes) + sum(
            self.of(group) for group in self._groups
        )

    def of(self, group: str) -> int:
        partitions = [
            TopicPartition(topic, p)
            for topic in self._groups[group]
            for p in sorted(self._partitions(topic))
        ]
        committed = {
            tp: meta.offset
            for tp, meta in self._admin.list_group_offsets({group: None})[group].items()
            if meta.offset >= 0
        }
        ends = self._offsets.end_offsets(partitions)
        starts = self._offsets.beginning_offsets(partitions)
        return sum(ends[tp] - committed.get(tp, starts[tp]) for tp in partitions)

    def _partitions(self, topic: str) -> set[int]:
        found = self._offsets.partitions_for_topic(topic)
        if not found:  # a topic read as empty would pass for a lag of 0
            raise RuntimeError(f"the broker names no partition of {topic}")
        return set(found)

    def seconds_until(self, at_most: int, timeout_seconds: float) -> float:
        """Poll until the lag is `at_most` or less; answer the seconds it took (the timeout
        if it never got there: the caller compares with it)."""
        started = time.monotonic()
        while self.total() > at_most:
            if time.monotonic() - started >= timeout_seconds:
                return timeout_seconds
            time.sleep(POLL_SECONDS)
        return time.monotonic() - started


def drain(
    bootstrap: str,
    outboxes: Sequence[Callable[[], int]] = (),
    timeout_seconds: float = 300.0,
    at_most: int = 0,
) -> float:
    """Wait until audit and notify have consumed what is already in Kafka; answer the seconds
    it took."""
    with ConsumerLag(bootstrap, outboxes=outboxes) as lag:
        return lag.seconds_until(at_most, timeout_seconds)
