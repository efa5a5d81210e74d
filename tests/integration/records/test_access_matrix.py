"""Who may do what to a chart: every role against every endpoint, and the one access event
each read request leaves in Kafka (read back from the broker, in request order)."""

from __future__ import annotations

import uuid

from shared.events import TOPIC_ACCESS, TOPIC_RECORDS
from tests.conftest import bearer
from tests.integration.records.support import consent_granted, observation

READS = ("one", "list", "versions", "version", "everything")


def read_paths(patient: str, record_id: str) -> dict[str, str]:
    base = f"/patients/{patient}"
    return {
        "one": f"{base}/records/{record_id}",
        "list": f"{base}/records",
        "versions": f"{base}/records/{record_id}/versions",
        "version": f"{base}/records/{record_id}/versions/1",
        "everything": f"{base}/$everything",
    }


def test_every_role_gets_its_status_and_each_read_leaves_one_access_event(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation(patient=patient))
    records.project(consent_granted(patient, ("organization", "org-b"), categories=["*"]))

    readers = {
        "patient self": bearer(token("patient", patient)),
        "other patient": bearer(token("patient", f"pat-{uuid.uuid4()}")),
        "practitioner of the authoring org": bearer(token("practitioner", "dr-a2", org="org-a")),
        "practitioner with consent": bearer(token("practitioner", "dr-b", org="org-b")),
        "practitioner with consent but no scope for it": bearer(
            token("practitioner", "dr-b2", org="org-b", scope="user/Condition.rs")
        ),
        "practitioner without consent": bearer(token("practitioner", "dr-c", org="org-c")),
        "patient with practitioner scopes": bearer(token("patient", patient, scope="user/*.rs")),
        "compliance": bearer(token("compliance", "auditor")),
        "admin": bearer(token("admin", "root")),
    }
    permit = {e: (200, "permit") for e in READS}
    refused = {e: (403, "deny") for e in READS}
    expected = {
        "patient self": permit,
        "other patient": refused,
        "practitioner of the authoring org": permit,
        "practitioner with consent": permit,
        # Scopes bound consent; a list answers only what may be seen (nothing, here).
        "practitioner with consent but no scope for it": {
            **refused,
            "list": (200, "deny"),
            "everything": (200, "deny"),
        },
        "practitioner without consent": {
            **refused,
            "list": (200, "deny"),
            "everything": (200, "deny"),
        },
        "patient with practitioner scopes": {
            **refused,
            "list": (200, "deny"),
            "everything": (200, "deny"),
        },
        "compliance": refused,
        "admin": refused,
    }
    paths = read_paths(patient, record_id)
    sent: list[tuple[str, str, str]] = []  # (reader, endpoint, outcome), in request order
    for reader, headers in readers.items():
        for endpoint in READS:
            response = records.client.get(paths[endpoint], headers=headers)
            status, outcome = expected[reader][endpoint]
            assert response.status_code == status, (reader, endpoint, response.json)
            if status >= 400:
                assert response.mimetype == "application/problem+json"
            sent.append((reader, endpoint, outcome))
    for endpoint in READS:  # no token: 401, and no principal to name in an event
        assert records.client.get(paths[endpoint]).status_code == 401
    records.publish()

    events = access.events(len(sent), where=lambda e: e.subject == patient, settle_seconds=1.0)
    assert len(events) == len(sent)
    for event, (reader, endpoint, outcome) in zip(events, sent, strict=True):
        assert event.data["outcome"] == outcome, (reader, endpoint)
        if outcome == "deny":
            assert event.short_type == "access.denied", (reader, endpoint)
        elif endpoint == "everything":
            assert event.short_type == "record.exported"
        else:
            assert event.short_type == "record.accessed"
        if outcome == "permit":
            assert event.data["record_ids"] == [record_id], (reader, endpoint)
            assert event.data["categories"] == ["Observation"]
        assert event.data["purpose"] == "TREAT"
    consented = [
        e for e, s in zip(events, sent, strict=True) if s[0] == "practitioner with consent"
    ]
    assert all(e.data["consent_ids"] and e.data["org"] == "org-b" for e in consented)


def test_writes_are_for_the_patient_and_practitioners_and_amendments_for_the_author(
    records, kafka_tap, token
):
    changes = kafka_tap(TOPIC_RECORDS, TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    self_ = bearer(token("patient", patient))
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    colleague = bearer(token("practitioner", "dr-colleague", org="org-a"))
    others = {
        "other patient": bearer(token("patient", f"pat-{uuid.uuid4()}")),
        "compliance": bearer(token("compliance", "auditor")),
        "admin": bearer(token("admin", "root")),
    }
    base = f"/patients/{patient}/records"

    assert records.client.post(base, json=observation(), headers=self_).status_code == 201
    record_id = records.write(author, patient, observation())
    for headers in others.values():
        assert records.client.post(base, json=observation(), headers=headers).status_code == 403
    read_only = bearer(token("practitioner", "dr-ro", org="org-a", scope="user/*.rs"))
    assert records.client.post(base, json=observation(), headers=read_only).status_code == 403

    for headers in (self_, colleague, *others.values()):
        put = records.client.put(f"{base}/{record_id}", json=observation("1"), headers=headers)
        assert put.status_code == 403
        mark = records.client.post(f"{base}/{record_id}/entered-in-error", headers=headers)
        assert mark.status_code == 403
    amended = records.client.put(f"{base}/{record_id}", json=observation("1"), headers=author)
    assert amended.status_code == 200 and amended.json["version"] == 2

    for headers in (colleague, *others.values()):
        if headers is not others["admin"]:
            erase = records.client.delete(f"/patients/{patient}", headers=headers)
            assert erase.status_code == 403
    assert records.client.delete(f"/patients/{patient}", headers=self_).status_code == 204
    other = f"pat-{uuid.uuid4()}"
    records.write(bearer(token("patient", other)), other, observation())
    assert records.client.delete(f"/patients/{other}", headers=others["admin"]).status_code == 204
    records.publish()

    events = changes.events(4, where=lambda e: e.subject == patient, settle_seconds=1.0)
    assert [e.short_type for e in events] == [
        "record.created",
        "record.created",
        "record.amended",
        "patient.erased",
    ]
