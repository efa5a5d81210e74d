"""Break-the-glass: a practitioner's emergency read, permitted and flagged with its reason."""

from __future__ import annotations

import uuid

from shared.events import TOPIC_ACCESS
from tests.conftest import bearer
from tests.integration.records.support import observation

REASON = "unconscious patient in the emergency department"


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
        assert event.data["purpose"] == "ETREAT"  # emergency treatment unless told otherwise
        assert event.data["record_ids"] == [record_id]


def test_breaking_the_glass_is_refused_to_anyone_but_practitioners(records, kafka_tap, token):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    record_id = records.write(bearer(token("patient", patient)), patient, observation())
    others = [token("patient", patient), token("compliance", "auditor"), token("admin", "root")]

    statuses = [
        records.client.get(
            f"/patients/{patient}/records/{record_id}",
            headers={**bearer(t), "X-Break-Glass-Reason": REASON},
        ).status_code
        for t in others
    ]

    assert statuses == [403, 403, 403]
    records.publish()
    events = access.events(3, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [e.short_type for e in events] == ["access.denied"] * 3
    assert all("break the glass" in e.data["reason"] for e in events)


def test_an_empty_or_overlong_reason_is_refused_as_input(records, token):
    patient = f"pat-{uuid.uuid4()}"
    doctor = bearer(token("practitioner", "dr-er", org="org-er"))
    for reason in ("   ", "x" * 501):
        response = records.client.get(
            f"/patients/{patient}/records", headers={**doctor, "X-Break-Glass-Reason": reason}
        )
        assert response.status_code == 422
