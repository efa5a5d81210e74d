"""How far a consumer group is behind: the facts on its topics after its committed offsets.

Counted by reading them, not by subtracting offsets: relays publish each batch in a Kafka
transaction (shared/relay_lease.py), which ends with a commit marker. The marker takes an
offset that no consumer commits past (a consumer commits the offset after the last message it
handled), so `end - committed` says 1 where nothing is left, and never reaches 0. A partition
held by a transaction still open counts 1: its facts are not readable yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from shared.kafka_access import client_options


class ConsumerLag:
    """Clients kept open across counts: opening them costs more than a count, and a lag that
    clears within a second is measured by counting often."""

    def __init__(self, bootstrap: str) -> None:
        servers = bootstrap.split(",")
        self._admin = KafkaAdminClient(bootstrap_servers=servers, **client_options())
        self._log_ends = KafkaConsumer(bootstrap_servers=servers, group_id=None, **client_options())
        self._reader = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **client_options(),
        )

    def __enter__(self) -> ConsumerLag:
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin.close()
        self._log_ends.close()
        self._reader.close()

    def of(self, group: str, topics: Sequence[str]) -> int:
        """The facts on `topics` that `group` has not committed past yet (from the beginning
        of a partition where it never committed: topics keep every fact)."""
        committed = self._admin.list_group_offsets({group: None})[group]
        return self._facts_after(committed, self._partitions(topics))

    def of_each(self, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
        return {group: self.of(group, topics) for group, topics in groups.items()}

    def _partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        partitions = []
        for topic in topics:
            found = self._reader.partitions_for_topic(topic)
            if not found:  # a topic read as empty would pass for a lag of 0
                raise RuntimeError(f"the broker names no partition of {topic}")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        return partitions

    def _facts_after(
        self,
        committed: Mapping[TopicPartition, OffsetAndMetadata],
        partitions: list[TopicPartition],
    ) -> int:
        ends = self._log_ends.end_offsets(partitions)  # the log's end, open transactions too
        starts = self._reader.beginning_offsets(partitions)
        behind = {
            tp: max(committed[tp].offset if tp in committed else -1, starts[tp])
            for tp in partitions
        }
        behind = {tp: offset for tp, offset in behind.items() if offset < ends[tp]}
        if not behind:
            return 0
        self._reader.assign(list(behind))
        for tp, offset in behind.items():
            self._reader.seek(tp, offset)
        found = 0
        # A marker is read past at once; an open transaction stops the reader before it.
        while polled := self._reader.poll(timeout_ms=300):
            found += sum(len(batch) for batch in polled.values())
        return found + sum(1 for tp in behind if self._reader.position(tp) < ends[tp])
