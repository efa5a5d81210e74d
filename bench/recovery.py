"""Time to recover from a broker kill, on a 3-node cluster under a steady mixed load.

The leader of the access topic's first partition is SIGKILLed and left down: the figures are
how long until facts flow again on the partitions it led (their new leader takes writes), and
until every outbox is empty and no consumer group lags. Then it is started again: how long
until every replica is back in sync. A reconcile of every request of the load
(tests/support/reconcile.py) says whether any fact was lost or doubled on the way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from caretrail.kafka_cluster import KafkaCluster
from caretrail.people import Person
from shared.config import Settings
from shared.events import FACT_TOPICS, TOPIC_ACCESS
from shared.kafka_access import client_options
from tests.support.mixed_load import MixedLoad
from tests.support.reconcile import Reconciliation, reconcile, settle

STEADY_SECONDS = 5.0
TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Recovery:
    facts_flow_seconds: float  # kill → first fact on a partition the killed node led
    lag_zero_seconds: float | None  # kill → no outbox row unpublished, no group lagging
    in_sync_seconds: float  # restart → every replica of the fact topics in sync
    reconciliation: Reconciliation


def after_broker_kill(
    cluster: KafkaCluster,
    urls: Mapping[str, str],
    db_urls: Mapping[str, str],
    settings: Settings,
    *,
    rate: float = 10.0,
) -> Recovery:
    with MixedLoad(dict(urls), settings, name="recovery", rate=rate) as load:
        time.sleep(STEADY_SECONDS)
        leader = cluster.leader_of(TOPIC_ACCESS, 0)
        watch = _at_end_of(cluster.bootstrap, _partitions_led_by(cluster, leader))
        cluster.kill(leader)
        killed_at = time.monotonic()
        flowing = _first_message(watch, killed_at) - killed_at
        lag_zero = _settled_under_load(cluster.bootstrap, db_urls, killed_at)
        cluster.restart(leader)
        restarted_at = time.monotonic()
        cluster.wait_until_replicated(FACT_TOPICS, TIMEOUT_SECONDS)
        in_sync = time.monotonic() - restarted_at
    healed = settle(cluster.bootstrap, db_urls, TIMEOUT_SECONDS)
    reconciliation = reconcile(
        "bench: kill the leader broker",
        load.requests,
        bootstrap=cluster.bootstrap,
        db_urls=db_urls,
        audit_url=urls["audit"],
        compliance_token=Person("c", "c", "compliance", "cora").token(settings),
        recover_seconds=healed,
    )
    return Recovery(flowing, lag_zero, in_sync, reconciliation)


def _settled_under_load(
    bootstrap: str, db_urls: Mapping[str, str], killed_at: float
) -> float | None:
    """Seconds from the kill to the first moment nothing is pending anywhere, the load still
    running (None: not within the timeout, as on a machine the load saturates)."""
    try:
        settle(bootstrap, db_urls, TIMEOUT_SECONDS)
    except TimeoutError:
        return None
    return time.monotonic() - killed_at


def _partitions_led_by(cluster: KafkaCluster, node: int) -> list[TopicPartition]:
    return [
        TopicPartition(TOPIC_ACCESS, p)
        for p in range(6)
        if cluster.leader_of(TOPIC_ACCESS, p) == node
    ]


def _at_end_of(bootstrap: str, partitions: list[TopicPartition]) -> KafkaConsumer:
    """A reader of `partitions` positioned at their end now, before the fault."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        isolation_level="read_committed",
        **client_options(),
    )
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    return consumer


def _first_message(consumer: KafkaConsumer, since: float) -> float:
    """When (monotonic) `consumer` read its first message (`since` + the timeout if none)."""
    try:
        while time.monotonic() - since < TIMEOUT_SECONDS:
            if any(consumer.poll(timeout_ms=100).values()):
                return time.monotonic()
        return since + TIMEOUT_SECONDS
    finally:
        consumer.close()
