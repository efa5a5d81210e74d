"""Kafka clients as caretrail uses them, and the topics of DESIGN.md."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.events import ALL_TOPICS
from shared.kafka_access import client_options

log = logging.getLogger(__name__)

PARTITIONS = 6


def make_producer(bootstrap_servers: str, **overrides: Any) -> KafkaProducer:
    """An idempotent producer that waits for every in-sync replica (`acks=all`)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers.split(","),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        # A producer facing a stopped broker gives up quickly; the caller backs off and retries.
        "max_block_ms": 5000,
        "request_timeout_ms": 10000,
        "reconnect_backoff_max_ms": 1000,
    }
    settings.update(client_options())
    settings.update(overrides)
    return KafkaProducer(**settings)


def make_consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits offsets only when told to, after its work is committed."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers.split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Relays publish in Kafka transactions: a batch a fenced relay left uncommitted (and
        # that its successor publishes again) is never delivered (shared/relay_lease.py).
        "isolation_level": "read_committed",
        "max_poll_records": 500,
        # A worker that dies holds its partitions until the session times out: keep it short.
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
        # Notice new partitions (or a metadata gap at start-up) in seconds, not 5 minutes.
        "metadata_max_age_ms": 10000,
        "reconnect_backoff_max_ms": 1000,
    }
    settings.update(client_options())
    settings.update(overrides)
    return KafkaConsumer(**settings)


def log_ends(
    bootstrap_servers: str, partitions: list[TopicPartition], timeout_ms: int = 5000
) -> dict[TopicPartition, int]:
    """Where each partition's log ends for a read_committed consumer, read by a client made
    for the purpose: a member whose own client lost a broker that still answers others can
    learn from it that facts wait (shared/stall_watch.py)."""
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=timeout_ms,
        **client_options(),
    )
    try:
        return reader.end_offsets(partitions, timeout_ms=timeout_ms)
    finally:
        reader.close(timeout_ms=1000)


def ensure_topics(
    bootstrap_servers: str,
    topics: tuple[str, ...] = ALL_TOPICS,
    *,
    partitions: int = PARTITIONS,
    replication_factor: int = 1,
) -> list[str]:
    """Create the missing topics (kept forever); answer the names created.

    Replicated topics take a write only when 2 copies have it (`min.insync.replicas`), so an
    acknowledged fact (`acks=all`) survives the loss of any one broker.
    """
    configs = {"retention.ms": "-1"}
    if replication_factor > 1:
        configs["min.insync.replicas"] = "2"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), **client_options())
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        new = [
            NewTopic(
                name=t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=configs,
            )
            for t in missing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently: %s", missing)
        return missing
    finally:
        admin.close()


def reachable(bootstrap_servers: str, timeout_seconds: float = 2.0) -> bool:
    """Whether a broker answers a metadata request within about `timeout_seconds`."""
    timeout_ms = int(timeout_seconds * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers.split(","),
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            **client_options(),
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()
