"""A group's lag is the facts it has not consumed: 0 once it committed past the last one, even
though a transaction's commit marker sits after it on the log."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from shared.broker import make_producer
from shared.consumer_lag import ConsumerLag
from shared.events import TOPIC_NOTIFY
from shared.kafka_access import client_options
from tests.support.kafka_tap import start_group_at_end


def commit_past(bootstrap: str, group: str, partition: TopicPartition, last_offset: int) -> None:
    """Commit as a consumer does after handling the message at `last_offset`."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        **client_options(),
    )
    try:
        consumer.commit({partition: OffsetAndMetadata(last_offset + 1, None, -1)})
    finally:
        consumer.close()


def test_lag_counts_unconsumed_facts_and_reaches_zero_behind_a_commit_marker(kafka_bootstrap):
    group = f"lag-test-{uuid.uuid4().hex[:8]}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_NOTIFY)
    producer = make_producer(kafka_bootstrap, transactional_id=f"lag-test-{uuid.uuid4().hex}")
    producer.init_transactions()
    try:
        with ConsumerLag(kafka_bootstrap) as lag:
            assert lag.of(group, [TOPIC_NOTIFY]) == 0

            producer.begin_transaction()
            sent = [producer.send(TOPIC_NOTIFY, key=b"p", value=b"{}") for _ in range(3)]
            producer.commit_transaction()
            assert lag.of(group, [TOPIC_NOTIFY]) == 3

            last = sent[-1].get(timeout=10)
            commit_past(
                kafka_bootstrap, group, TopicPartition(TOPIC_NOTIFY, last.partition), last.offset
            )
            assert lag.of(group, [TOPIC_NOTIFY]) == 0  # `end - committed` says 1: the marker

            producer.begin_transaction()
            producer.send(TOPIC_NOTIFY, key=b"p", value=b"{}").get(timeout=10)
            assert lag.of(group, [TOPIC_NOTIFY]) == 1  # open: not readable yet, not done either
            producer.abort_transaction()
            assert lag.of(group, [TOPIC_NOTIFY]) == 0  # aborted: never a fact
    finally:
        producer.close(timeout=5)
