"""A rebuild from offset 0 reproduces the chains the live worker built, hash for hash."""

from __future__ import annotations

from uuid import uuid4

from kafka.admin import KafkaAdminClient
from sqlalchemy import delete

from services.audit.domain import check_chains
from services.audit.rebuild import rebuild
from services.audit.store import AuditUnitOfWork, Reviews, reviews
from services.audit.worker import build_worker
from shared.config import Settings
from shared.db import session_factory
from shared.events import new_event
from shared.kafka_access import client_options
from tests.integration.audit.conftest import wait_until
from tests.integration.audit.test_worker import committed_past, publish, running
from tests.unit.audit.facts import access, consent_granted, record_created


def committed_offsets(bootstrap: str, group: str) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **client_options())
    try:
        return {tp: meta.offset for tp, meta in admin.list_group_offsets(group)[group].items()}
    finally:
        admin.close()


def test_a_rebuild_from_offset_zero_reproduces_the_live_chain_heads(settings: Settings, engine):
    bootstrap, group = settings.kafka_bootstrap_servers, settings.extra["consumer_group"]
    patients = [f"p-{uuid4()}" for _ in range(8)]
    read = access(patients[0], actor="practitioner:dr-lee")
    facts = [read, read]  # one event at two offsets: both runs must skip the same copy
    for patient in patients:
        facts += [
            record_created(patient),
            consent_granted(patient),
            access(patient, actor="practitioner:dr-lee", org="org-a"),
            access(patient, actor="practitioner:dr-x", outcome="deny"),
        ]
    positions = publish(bootstrap, *facts)

    # Live: the worker's group starts at offset 0 of every fact topic, so it appends the
    # whole shared broker, ours and other tests' facts alike, in whatever batches it polls.
    with running(build_worker(settings)):
        wait_until(lambda: committed_past(bootstrap, group, positions), timeout_seconds=60)
    live_end = committed_offsets(bootstrap, group)
    with AuditUnitOfWork(session_factory(engine)) as uow:
        live_heads = uow.trail.heads()
        assert all(r.ok for r in check_chains(uow.trail.in_chain_order()))

    # Rebuild: empty the trail and replay from offset 0 up to where the live worker stopped.
    result = rebuild(engine, bootstrap, until=live_end)

    assert result.heads_before == live_heads
    assert result.heads_after == live_heads
    assert result.events >= len(facts) and result.events_per_second > 0
    ours = {f.id for f in facts}
    with AuditUnitOfWork(session_factory(engine)) as uow:
        rebuilt = [s for s in uow.trail.in_chain_order() if s.entry.event_id in ours]
    assert len(rebuilt) == len(ours)

    # Two processes, each replaying half the partitions, build the same chains.
    shared_out = rebuild(engine, bootstrap, until=live_end, processes=2)
    assert shared_out.heads_after == live_heads
    assert shared_out.events == result.events


def test_a_rebuild_into_a_database_without_reviews_restores_them_once(settings, engine):
    """Reviews are audit's own state, also kept as facts: a database rebuilt from Kafka
    alone gets each one back, once, even when its fact sits at two offsets."""
    bootstrap = settings.kafka_bootstrap_servers
    patient = f"p-{uuid4()}"
    glass = access(
        patient,
        actor="practitioner:dr-er",
        org="org-er",
        break_glass_reason="OVRER",
        break_glass_note="k.bm9uY2U.c2VhbGVk",
    )
    review = new_event(
        "break-glass.reviewed",
        source_service="audit",
        subject=patient,
        actor="compliance:cora",
        data={
            "entry_id": glass.id,
            "event_id": glass.id,
            "patient": patient,
            "decision": "justified",
            "note": None,
        },
    )
    positions = publish(bootstrap, glass, review, review)
    with engine.begin() as conn:
        conn.execute(delete(reviews))

    rebuild(engine, bootstrap, until={tp: offset + 1 for tp, offset in positions})

    with AuditUnitOfWork(session_factory(engine)) as uow:
        restored = Reviews(uow.session).of([glass.id])
        assert restored[glass.id].decision == "justified"
        assert restored[glass.id].reviewer == "compliance:cora"
        assert uow.trail.get(review.id) is not None
