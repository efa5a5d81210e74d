"""Break-the-glass: a practitioner's emergency read, permitted and flagged with its reason code;
their note travels only sealed with the patient's data key, and only compliance opens it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.audit.consumers import HANDLERS as AUDIT_HANDLERS
from services.audit.domain import check_chains
from services.audit.store import AuditUnitOfWork
from services.audit.store import metadata as audit_metadata
from services.records.store import metadata
from shared.break_glass import CODES
from shared.db import create_schema, make_engine, session_factory
from shared.events import TOPIC_ACCESS
from shared.inbox import Origin
from shared.outbox import OUTBOX
from tests.conftest import bearer
from tests.integration.records.support import observation

REASON = "OVRER"
NOTE = "unconscious in the emergency department, suspected overdose, HIV+"


def test_a_practitioner_breaking_the_glass_reads_and_the_event_carries_the_reason(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation("44249-1", "PSY"))
    emergency = {
        **bearer(token("practitioner", "dr-er", org="org-er")),
        "X-Break-Glass-Reason": REASON,
    }

    one = records.client.get(f"/patients/{patient}/records/{record_id}", headers=emergency)
    listed = records.client.get(f"/patients/{patient}/records", headers=emergency)

    assert one.status_code == 200 and one.json["id"] == record_id
    assert [r["id"] for r in listed.json["items"]] == [record_id]
    records.publish()
    events = access.events(2, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [e.short_type for e in events] == ["record.accessed", "record.accessed"]
    for event in events:
        assert event.data["break_glass_reason"] == REASON
        assert event.data["break_glass_note"] is None  # none was given
        assert event.data["purpose"] == "ETREAT"  # emergency treatment unless told otherwise
        assert event.data["record_ids"] == [record_id]


def test_a_note_travels_sealed_and_only_compliance_opens_it_as_a_fact_until_erasure(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    record_id = records.write(bearer(token("patient", patient)), patient, observation())
    emergency = {
        **bearer(token("practitioner", "dr-er", org="org-er")),
        "X-Break-Glass-Reason": "other",
        "X-Break-Glass-Note": f"  {NOTE}  ",
    }

    read = records.client.get(f"/patients/{patient}/records/{record_id}", headers=emergency)

    assert read.status_code == 200
    with records.engine.connect() as connection:
        outbox_rows = [r.value for r in connection.execute(select(metadata.tables[OUTBOX].c.value))]
    assert not any(b"overdose" in bytes(row) for row in outbox_rows)
    records.publish()
    [fact] = access.events(1, where=lambda e: e.subject == patient)
    [message] = [m for m in access.messages if m.key == patient.encode()]
    assert b"overdose" not in message.value and b"HIV" not in message.value
    assert fact.data["break_glass_reason"] == "other"
    sealed = fact.data["break_glass_note"]
    assert sealed and "overdose" not in sealed

    # Compliance opens it; opening is an access fact that names no content.
    compliance = bearer(token("compliance", "cora"))
    path = f"/patients/{patient}/break-glass-notes/open"
    opened = records.client.post(path, json={"note": sealed}, headers=compliance)
    assert opened.status_code == 200 and opened.json == {"note": NOTE}
    records.publish()
    [opening] = access.events(2, where=lambda e: e.subject == patient)[1:]
    assert (opening.short_type, opening.actor) == ("record.accessed", "compliance:cora")
    assert opening.data["action"] == "open-break-glass-note"
    assert opening.data["record_ids"] == [] and opening.data["break_glass_note"] is None
    assert b"overdose" not in [m for m in access.messages if m.key == patient.encode()][-1].value

    # Nobody else opens it: not the practitioner who wrote it, not the patient.
    for other in (emergency, bearer(token("patient", patient))):
        assert records.client.post(path, json={"note": sealed}, headers=other).status_code == 403
    # A note is bound to its patient, and junk is no note.
    elsewhere = f"/patients/pat-{uuid.uuid4()}/break-glass-notes/open"
    assert (
        records.client.post(elsewhere, json={"note": sealed}, headers=compliance).status_code == 422
    )
    assert records.client.post(path, json={"note": "x.y.z"}, headers=compliance).status_code == 422

    # Erased with the patient's data.
    erased = records.client.delete(
        f"/patients/{patient}", headers=bearer(token("patient", patient))
    )
    assert erased.status_code == 204
    gone = records.client.post(path, json={"note": sealed}, headers=compliance)
    assert gone.status_code == 410
    assert gone.headers["Content-Type"].startswith("application/problem+json")
    assert "erased" in gone.json["detail"]


def test_the_fhir_api_takes_the_same_reason_code_and_sealed_note(records, kafka_tap, token):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    record_id = records.write(bearer(token("patient", patient)), patient, observation())
    doctor = bearer(token("practitioner", "dr-er", org="org-er"))

    read = records.client.get(
        f"/fhir/Observation/{record_id}",
        headers={
            **doctor,
            "X-Break-Glass-Reason": "patient-unreachable",
            "X-Break-Glass-Note": NOTE,
        },
    )
    refused = records.client.get(
        f"/fhir/Observation/{record_id}", headers={**doctor, "X-Break-Glass-Reason": "coma"}
    )

    assert read.status_code == 200 and read.json["resourceType"] == "Observation"
    assert refused.status_code == 422
    assert refused.json["resourceType"] == "OperationOutcome"
    records.publish()
    [fact] = access.events(1, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert fact.data["break_glass_reason"] == "patient-unreachable"
    assert fact.data["break_glass_note"] and NOTE not in fact.data["break_glass_note"]


def test_breaking_the_glass_is_refused_to_anyone_but_practitioners(records, kafka_tap, token):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    record_id = records.write(bearer(token("patient", patient)), patient, observation())
    others = [token("patient", patient), token("compliance", "auditor"), token("admin", "root")]

    statuses = [
        records.client.get(
            f"/patients/{patient}/records/{record_id}",
            headers={**bearer(t), "X-Break-Glass-Reason": REASON, "X-Break-Glass-Note": NOTE},
        ).status_code
        for t in others
    ]

    assert statuses == [403, 403, 403]
    records.publish()
    events = access.events(3, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [e.short_type for e in events] == ["access.denied"] * 3
    assert all("break the glass" in e.data["reason"] for e in events)
    assert all(e.data["break_glass_reason"] == REASON for e in events)
    assert not any(b"overdose" in m.value for m in access.messages)


def test_an_unknown_reason_or_a_bad_note_is_refused_as_input_naming_the_codes(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    doctor = bearer(token("practitioner", "dr-er", org="org-er"))
    sent = [
        {"X-Break-Glass-Reason": "unconscious patient"},  # free text is no longer a reason
        {"X-Break-Glass-Reason": "   "},
        {"X-Break-Glass-Reason": "x" * 501},
        {"X-Break-Glass-Reason": "other"},  # `other` says nothing without a note
        {"X-Break-Glass-Reason": REASON, "X-Break-Glass-Note": "   "},
        {"X-Break-Glass-Reason": REASON, "X-Break-Glass-Note": "x" * 501},
        {"X-Break-Glass-Note": NOTE},  # a note without a reason breaks no glass
    ]
    for headers in sent:
        response = records.client.get(f"/patients/{patient}/records", headers={**doctor, **headers})
        assert response.status_code == 422
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "overdose" not in response.get_data(as_text=True)
    unknown = records.client.get(
        f"/patients/{patient}/records", headers={**doctor, "X-Break-Glass-Reason": "coma"}
    )
    assert all(code in unknown.json["detail"] for code in CODES)
    records.publish()
    assert access.events(where=lambda e: e.subject == patient, timeout_seconds=1.5) == []


def test_the_audit_entry_keeps_the_code_and_the_sealed_note_and_verifies_after_erasure(
    records, kafka_tap, token, tmp_path
):
    """From records' fact on Kafka to audit's entry, the way compliance reviews it: the trail
    shows the code, compliance opens the note it keeps with records, and once the patient is
    erased the note no longer opens while the entry still verifies."""
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    record_id = records.write(bearer(token("patient", patient)), patient, observation())
    doctor = bearer(token("practitioner", "dr-er", org="org-er"))
    read = records.client.get(
        f"/patients/{patient}/records/{record_id}",
        headers={
            **doctor,
            "X-Break-Glass-Reason": "consent-not-recorded",
            "X-Break-Glass-Note": NOTE,
        },
    )
    assert read.status_code == 200
    records.publish()
    [fact] = access.events(1, where=lambda e: e.subject == patient)
    [message] = [m for m in access.messages if m.key == patient.encode()]
    assert b"overdose" not in message.value and b"consent-not-recorded" in message.value

    # Audit takes the fact as its consumer does (its own database, as in production).
    trail = make_engine(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    create_schema(trail, audit_metadata)
    sessions = session_factory(trail)
    with sessions() as session:
        AUDIT_HANDLERS[fact.type](session, fact, Origin(TOPIC_ACCESS, message.partition, 0))
        session.commit()
    with AuditUnitOfWork(sessions) as uow:
        stored = uow.trail.get(fact.id)
    assert stored is not None
    assert stored.entry.break_glass_reason == "consent-not-recorded"
    assert stored.entry.break_glass_note == fact.data["break_glass_note"]
    assert "overdose" not in stored.entry.canonical().decode()
    assert check_chains([stored])[0].ok

    compliance = bearer(token("compliance", "cora"))
    path = f"/patients/{patient}/break-glass-notes/open"
    sealed = {"note": stored.entry.break_glass_note}
    assert records.client.post(path, json=sealed, headers=compliance).json == {"note": NOTE}

    erased = records.client.delete(
        f"/patients/{patient}", headers=bearer(token("patient", patient))
    )
    assert erased.status_code == 204
    assert records.client.post(path, json=sealed, headers=compliance).status_code == 410
    with AuditUnitOfWork(sessions) as uow:
        after = uow.trail.get(fact.id)
    assert after == stored and check_chains([after])[0].ok
    trail.dispose()
