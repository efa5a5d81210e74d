"""The consent worker: expiry (once, even with two racing), the relay, the erasure consumer."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from services.consent.consumers import HANDLERS
from services.consent.ledger import expiry_job
from services.consent.worker import build_worker
from shared.broker import make_producer
from shared.db import make_engine, session_factory
from shared.events import TOPIC_CONSENT, new_event, to_kafka, type_name
from shared.inbox import Origin, handle_once
from shared.outbox import wait_until_published
from tests.integration.consent.conftest import ConsentService, settings_for

EXPIRED = type_name("consent.expired")
REVOKED = type_name("consent.revoked")


def _wait_for(condition, timeout_seconds: float = 15.0) -> None:
    stop = threading.Event()
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_seconds)
    while not condition():
        assert datetime.now(UTC) < deadline, "timed out"
        stop.wait(0.05)


def test_two_workers_racing_expire_each_consent_once_and_on_time(
    service: ConsentService, kafka_tap
):
    tap = kafka_tap(TOPIC_CONSENT)
    patient = service.new_patient()
    now = datetime.now(UTC)
    soon = {"start": now.isoformat(), "end": (now + timedelta(seconds=1)).isoformat()}
    ids = sorted(service.grant(patient, period=soon)["id"] for _ in range(4))
    lasting = service.grant(patient)

    # Two schedulers, each with its own engine, as two worker processes would have.
    engines = [make_engine(service.database_url) for _ in range(2)]
    stop = threading.Event()
    schedulers = [
        threading.Thread(target=expiry_job(session_factory(e), interval_seconds=0.2), args=(stop,))
        for e in engines
    ]
    for scheduler in schedulers:
        scheduler.start()
    try:
        _wait_for(lambda: sum(r["status"] == "expired" for r in service.read_model()) == 4)
        stop.wait(1.0)  # let both go round again: a second expiry must not follow
    finally:
        stop.set()
        for scheduler in schedulers:
            scheduler.join()
        for engine in engines:
            engine.dispose()

    wait_until_published(service.relay)
    expired = tap.events(
        4, where=lambda e: e.subject == patient.id and e.type == EXPIRED, settle_seconds=1.0
    )
    assert sorted(e.data["consent_id"] for e in expired) == ids
    assert all(e.time - datetime.fromisoformat(soon["end"]) < timedelta(seconds=3) for e in expired)
    assert {e.actor for e in expired} == {"system"}
    statuses = {r["consent_id"]: r["status"] for r in service.read_model()}
    assert statuses[lasting["id"]] == "active"


def _erased(patient: str):
    return new_event(
        "patient.erased",
        source_service="records",
        subject=patient,
        actor=f"patient:{patient}",
        data={"patient": patient, "erased_by": f"patient:{patient}"},
    )


def test_an_erased_patients_consents_are_revoked_once_when_the_event_comes_twice(
    service: ConsentService,
):
    patient = service.new_patient()
    ids = {service.grant(patient)["id"] for _ in range(2)}
    erased = _erased(patient.id)
    origin = Origin("caretrail.records.v1", 0, 1)

    first = handle_once(service.sessions(), "consent", HANDLERS[erased.type], erased, origin)
    second = handle_once(service.sessions(), "consent", HANDLERS[erased.type], erased, origin)

    assert (first, second) == (True, False)
    assert {r["consent_id"]: r["status"] for r in service.read_model()} == dict.fromkeys(
        ids, "revoked"
    )
    assert service.counts() == (4, 2)


def test_the_worker_consumes_an_erasure_and_publishes_the_revocations(
    service: ConsentService, kafka_tap, kafka_bootstrap: str
):
    tap = kafka_tap(TOPIC_CONSENT)
    patient = service.new_patient()
    ids = sorted(service.grant(patient)["id"] for _ in range(2))
    worker = build_worker(settings_for(service.database_url, kafka_bootstrap))
    worker.consumer_group = f"consent-test-{uuid.uuid4()}"
    running = threading.Thread(target=worker.run)
    running.start()
    producer = make_producer(kafka_bootstrap)
    try:
        record = to_kafka(_erased(patient.id))
        producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush()

        events = tap.events(
            4, where=lambda e: e.subject == patient.id, timeout_seconds=40, settle_seconds=0.5
        )
    finally:
        worker.stop.set()
        running.join()
        producer.close()

    revoked = [e for e in events if e.type == REVOKED]
    assert sorted(e.data["consent_id"] for e in revoked) == ids
    assert {e.actor for e in revoked} == {"system"}
    assert len(events) == 4  # the two grants, published by the worker's relay, and two revocations
