"""The worker appends every fact exactly once, whatever Kafka redelivers, and signs the heads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from uuid import uuid4

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, delete, func, select
from sqlalchemy import event as sqlalchemy_event

from services.audit.consumers import HANDLERS
from services.audit.domain import check_chains
from services.audit.store import AuditUnitOfWork, entries, inbox
from services.audit.worker import build_worker
from shared.broker import make_consumer, make_producer
from shared.config import Settings
from shared.db import session_factory
from shared.events import (
    FACT_TOPICS,
    TOPIC_ACCESS,
    TOPIC_DLQ,
    Event,
    KafkaRecord,
    to_kafka,
    unsigned_record,
)
from shared.fact_signing import FactKeys
from shared.inbox import ConsumerLoop, Origin, handle_in_one_transaction
from shared.kafka_access import client_options
from tests.conftest import bearer
from tests.integration.audit.conftest import start_group_at_end, wait_until
from tests.unit.audit.facts import access, consent_granted


def publish(bootstrap: str, *events: Event) -> list[tuple[TopicPartition, int]]:
    """Send each event (the same one twice if given twice); answer where each landed."""
    return send_raw(bootstrap, *(to_kafka(event) for event in events))


def send_raw(bootstrap: str, *records: KafkaRecord) -> list[tuple[TopicPartition, int]]:
    """Send each message as given; answer where each landed."""
    producer = make_producer(bootstrap)
    try:
        futures = [
            producer.send(r.topic, key=r.key, value=r.value, headers=r.headers) for r in records
        ]
        producer.flush()
        landed = [f.get(timeout=30) for f in futures]
        return [(TopicPartition(m.topic, m.partition), m.offset) for m in landed]
    finally:
        producer.close()


def committed_past(bootstrap: str, group: str, positions) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **client_options())
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
        fact_keys=FactKeys.from_directory(),
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


def test_a_redelivered_batch_appends_nothing_even_when_the_inbox_forgot_it(engine):
    """After a rebuild the inbox is empty: the entries' event ids still make it a no-op."""
    sessions = session_factory(engine)
    patient = f"p-{uuid4()}"
    facts = [access(patient, actor=f"practitioner:dr-{n}") for n in range(3)]
    batch = [(f, Origin(TOPIC_ACCESS, 0, n), HANDLERS[f.type]) for n, f in enumerate(facts)]

    assert handle_in_one_transaction(sessions, "audit", batch) == 3
    with engine.begin() as conn:
        conn.execute(delete(inbox))
    handle_in_one_transaction(sessions, "audit", batch)

    assert [(r.event_id, r.seq) for r in entries_of(engine, patient)] == [
        (f.id, n + 1) for n, f in enumerate(facts)
    ]
    with AuditUnitOfWork(sessions) as uow:
        assert all(report.ok for report in check_chains(uow.trail.in_chain_order()))


def test_a_polls_batch_is_appended_with_one_insert(engine):
    sessions = session_factory(engine)
    patient = f"p-{uuid4()}"
    facts = [access(patient, actor=f"practitioner:dr-{n}") for n in range(5)]
    batch = [(f, Origin(TOPIC_ACCESS, 1, n), HANDLERS[f.type]) for n, f in enumerate(facts)]
    inserts: list[str] = []

    def count_inserts(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ENTRIES"):
            inserts.append(statement)

    sqlalchemy_event.listen(engine, "before_cursor_execute", count_inserts)
    try:
        assert handle_in_one_transaction(sessions, "audit", batch) == 5
    finally:
        sqlalchemy_event.remove(engine, "before_cursor_execute", count_inserts)

    assert len(inserts) == 1
    assert len(entries_of(engine, patient)) == 5


def test_a_fact_the_trail_cannot_hold_is_dead_lettered_and_the_rest_of_its_batch_appended(
    settings: Settings, engine, kafka_tap
):
    group = settings.extra["consumer_group"]
    bootstrap = settings.kafka_bootstrap_servers
    start_group_at_end(bootstrap, group)
    dlq = kafka_tap(TOPIC_DLQ)
    patient = f"p-{uuid4()}"
    before, after = (access(patient, actor=f"practitioner:dr-{n}") for n in range(2))
    # Valid JSON, valid CloudEvent, but a lone surrogate has no UTF-8 form: no entry can hold it.
    poison = access(patient, actor="practitioner:dr-x", record_ids=("r-\ud800",))
    positions = publish(bootstrap, before, poison, after)

    with running(build_worker(settings)):
        wait_until(lambda: committed_past(bootstrap, group, positions))
        dead = dlq.read(lambda ms: any(m.key == patient.encode() for m in ms))

    [dead_letter] = [dict(m.headers) for m in dead if m.key == patient.encode()]
    assert dead_letter["ce_id"] == poison.id.encode()
    assert [r.event_id for r in entries_of(engine, patient)] == [before.id, after.id]


def test_a_forged_fact_never_becomes_an_entry(settings: Settings, engine, kafka_tap):
    """The attack of issue 16: a well-formed `record.accessed` sent by a plain Kafka client
    that holds no service's key. It goes to the DLQ, saying why, and the trail stays as it
    was; genuine facts around it are appended."""
    group = settings.extra["consumer_group"]
    bootstrap = settings.kafka_bootstrap_servers
    start_group_at_end(bootstrap, group)
    dlq = kafka_tap(TOPIC_DLQ)
    patient = f"p-{uuid4()}"
    before, after = (access(patient, actor=f"practitioner:dr-{n}") for n in range(2))
    forged = access(patient, actor="practitioner:dr-innocent", org="org-innocent")
    unsigned = unsigned_record(forged)  # what `new_event` and any producer give without a key
    resigned = to_kafka(replace(forged, id=str(uuid4())))  # a signature, then the data bent
    bent = replace(resigned, value=resigned.value.replace(b"org-innocent", b"org-elsewhere"))
    positions = publish(bootstrap, before)
    positions += send_raw(bootstrap, unsigned, bent)
    positions += publish(bootstrap, after)

    with running(build_worker(settings)):
        wait_until(lambda: committed_past(bootstrap, group, positions))
        dead = dlq.read(lambda ms: sum(m.key == patient.encode() for m in ms) >= 2)

    letters = [dict(m.headers) for m in dead if m.key == patient.encode()]
    assert sorted(d["dlq_error"].decode() for d in letters) == [
        "not authentic: the fact is not signed",
        "not authentic: the signature does not verify for source 'caretrail/records'",
    ]
    assert all(b"org-innocent" not in d["dlq_error"] for d in letters)
    assert [r.event_id for r in entries_of(engine, patient)] == [before.id, after.id]
