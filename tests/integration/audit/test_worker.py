"""The worker appends every fact exactly once, whatever Kafka redelivers, and signs the heads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, func, select

from services.audit.consumers import HANDLERS
from services.audit.domain import check_chains
from services.audit.store import AuditUnitOfWork, entries
from services.audit.worker import build_worker
from shared.broker import make_consumer, make_producer
from shared.config import Settings
from shared.db import session_factory
from shared.events import FACT_TOPICS, Event, to_kafka
from shared.inbox import ConsumerLoop
from tests.conftest import bearer
from tests.integration.audit.conftest import start_group_at_end, wait_until
from tests.unit.audit.facts import access, consent_granted


def publish(bootstrap: str, *events: Event) -> list[tuple[TopicPartition, int]]:
    """Send each event (the same one twice if given twice); answer where each landed."""
    producer = make_producer(bootstrap)
    try:
        futures = []
        for event in events:
            record = to_kafka(event)
            futures.append(
                producer.send(
                    record.topic, key=record.key, value=record.value, headers=record.headers
                )
            )
        producer.flush()
        metadata = [f.get(timeout=30) for f in futures]
        return [(TopicPartition(m.topic, m.partition), m.offset) for m in metadata]
    finally:
        producer.close()


def committed_past(bootstrap: str, group: str, positions) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return all(tp in offsets and offsets[tp].offset > offset for tp, offset in positions)


def entries_of(engine: Engine, patient: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            select(entries.c.event_id, entries.c.offset, entries.c.seq)
            .where(entries.c.patient == patient)
            .order_by(entries.c.id)
        ).all()


@contextmanager
def running(worker) -> Iterator[None]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop.set()
        thread.join(timeout=30)


class ForgetfulConsumer:
    """A Kafka consumer that never gets its offsets committed: the process died first."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    def commit(self, offsets: Any = None) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def test_the_same_event_delivered_twice_is_appended_once(settings: Settings, engine):
    group = settings.extra["consumer_group"]
    start_group_at_end(settings.kafka_bootstrap_servers, group)
    patient = f"p-{uuid4()}"
    read, granted = access(patient, actor="practitioner:dr-lee"), consent_granted(patient)

    # A producer retry can leave one event at two offsets: both copies reach the consumer.
    positions = publish(settings.kafka_bootstrap_servers, read, read, granted)
    with running(build_worker(settings)):
        wait_until(lambda: committed_past(settings.kafka_bootstrap_servers, group, positions))

    rows = entries_of(engine, patient)
    assert sorted(r.event_id for r in rows) == sorted([read.id, granted.id])
    first_copy = positions[0][1]
    assert [r.offset for r in rows if r.event_id == read.id] == [first_copy]


def test_a_consumer_restarted_before_committing_offsets_appends_nothing_twice(
    settings: Settings, engine
):
    group = settings.extra["consumer_group"]
    bootstrap = settings.kafka_bootstrap_servers
    start_group_at_end(bootstrap, group)
    patient = f"p-{uuid4()}"
    facts = [access(patient, actor=f"practitioner:dr-{n}") for n in range(3)]
    positions = publish(bootstrap, *facts)

    producer = make_producer(bootstrap)
    crashed = ConsumerLoop(
        consumer=group,
        kafka_consumer=ForgetfulConsumer(make_consumer(bootstrap, group)),
        producer=producer,
        sessions=session_factory(engine),
        handlers=HANDLERS,
        topics=FACT_TOPICS,
    )
    thread = threading.Thread(target=crashed.run, daemon=True)
    thread.start()
    wait_until(lambda: len(entries_of(engine, patient)) == 3)
    crashed.stop.set()
    thread.join(timeout=30)
    producer.close()
    assert not committed_past(bootstrap, group, positions)

    with running(build_worker(settings)):  # the restart: Kafka hands the events over again
        wait_until(lambda: committed_past(bootstrap, group, positions))

    assert sorted(r.event_id for r in entries_of(engine, patient)) == sorted(f.id for f in facts)
    with AuditUnitOfWork(session_factory(engine)) as uow:
        assert all(report.ok for report in check_chains(uow.trail.in_chain_order()))


def test_the_worker_signs_checkpoints_of_the_chain_heads(settings: Settings, engine, client, token):
    group = settings.extra["consumer_group"]
    start_group_at_end(settings.kafka_bootstrap_servers, group)
    patient = f"p-{uuid4()}"
    [(partition, offset)] = publish(
        settings.kafka_bootstrap_servers, access(patient, actor="practitioner:dr-lee")
    )
    officer = bearer(token("compliance", "officer"))

    def signed_head():
        response = client.get("/audit/checkpoints/latest", headers=officer)
        if response.status_code != 200:
            return None
        return next(
            (
                h
                for h in response.json["heads"]
                if (h["topic"], h["partition"]) == (partition.topic, partition.partition)
            ),
            None,
        )

    with running(build_worker(settings)):
        head = wait_until(signed_head)

    with engine.connect() as conn:
        last = conn.execute(
            select(func.max(entries.c.seq)).where(
                entries.c.topic == partition.topic, entries.c.partition == partition.partition
            )
        ).scalar_one()
    assert head["seq"] == last
    assert client.get("/audit/verify", headers=officer).json["checkpoint"]["signature_ok"]
