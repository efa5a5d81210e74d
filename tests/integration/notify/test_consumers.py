"""Events from records and consent become one notification each, on the chosen channels."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.notify.jobs import warn_of_expiring_consents
from services.notify.store import deliveries, digest_entries
from tests.conftest import bearer
from tests.unit.notify import facts


@pytest.fixture
def patient() -> str:
    return f"p-{uuid.uuid4()}"


@pytest.fixture
def patient_token(token, patient):
    return token("patient", patient, patient=patient)


def channels_of(notify, notification_id):
    with notify.engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.channel).where(deliveries.c.notification_id == notification_id)
        )
        return sorted(row.channel for row in rows)


def test_each_kind_of_fact_becomes_the_right_notification(notify, patient, patient_token):
    events = [
        facts.consent_granted(patient, consent_id="c-1"),
        facts.access(patient, consent_ids=("c-1",)),
        facts.access(patient, break_glass_reason="OVRER", consent_ids=()),
        facts.access(patient, outcome="deny", actor="practitioner:dr-x", org="org-b"),
        facts.record_created(patient),
        facts.consent_ended("consent.revoked", patient, consent_id="c-1", actor="admin:ops"),
        facts.consent_granted(patient, consent_id="c-2"),
        facts.consent_ended("consent.expired", patient, consent_id="c-2"),
    ]
    for event in events:
        assert notify.handle(event)

    inbox = notify.inbox(patient, patient_token)
    assert [(n["kind"], n["title"]) for n in reversed(inbox)] == [
        ("consent-granted", "A consent to share your records was granted"),
        ("record-accessed", "Your records were read"),
        ("break-glass", "Emergency access to your records"),
        ("access-denied", "Someone was refused access to your records"),
        ("record-added", "A provider added to your records"),
        ("consent-revoked", "A consent was revoked"),
        ("consent-granted", "A consent to share your records was granted"),
        ("consent-expired", "A consent has expired"),
    ]
    revoked = inbox[2]
    assert revoked["body"] == (
        "Consent c-1 (practitioner dr-lee) was revoked; it no longer shares your records."
    )
    assert inbox[-2]["urgent"] is False and inbox[-3]["urgent"] is True
    assert all(n["read_at"] is None and n["deliveries"] == [] for n in inbox)


def test_the_patients_own_actions_create_nothing(notify, patient, patient_token):
    own = f"patient:{patient}"
    for event in (
        facts.access(patient, actor=own, role="patient", org=None, consent_ids=()),
        facts.record_created(patient, source="phr"),
        facts.consent_granted(patient, actor=own),
        facts.consent_ended("consent.revoked", patient, actor=own),
    ):
        assert notify.handle(event)
    assert notify.inbox(patient, patient_token) == []


def test_the_same_event_delivered_twice_notifies_once(notify, patient, patient_token, receiver):
    hook = receiver()
    client = notify.client
    client.post(
        f"/patients/{patient}/webhooks", json={"url": hook.url}, headers=bearer(patient_token)
    )
    client.put(
        f"/patients/{patient}/notification-preferences",
        json={"kinds": {"record-accessed": {"channels": ["inbox", "webhook"]}}},
        headers=bearer(patient_token),
    )
    event = facts.access(patient)
    assert notify.handle(event) is True
    assert notify.handle(event) is False  # the inbox knows it
    assert notify.handle(event, consumer="notify-replay") is True  # a replay in another group
    inbox = notify.inbox(patient, patient_token)
    assert len(inbox) == 1
    assert channels_of(notify, inbox[0]["id"]) == ["webhook"]
    notify.deliver_all()
    assert len(hook.calls) == 1


def test_channels_follow_the_preferences_of_each_kind(notify, patient, patient_token, receiver):
    hook = receiver()
    headers = bearer(patient_token)
    notify.client.post(f"/patients/{patient}/webhooks", json={"url": hook.url}, headers=headers)
    response = notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={
            "email": "pat@example.org",
            "kinds": {
                "record-accessed": {"channels": ["email", "webhook"]},
                "record-added": {"channels": ["email"], "delivery": "daily_digest"},
            },
        },
        headers=headers,
    )
    assert response.status_code == 200
    for event in (
        facts.access(patient),
        facts.record_created(patient),
        facts.access(patient, outcome="deny"),
        facts.access(patient, break_glass_reason="OVRER"),
    ):
        notify.handle(event)

    by_kind = {n["kind"]: n["id"] for n in notify.inbox(patient, patient_token)}
    assert channels_of(notify, by_kind["record-accessed"]) == ["email", "webhook"]
    assert channels_of(notify, by_kind["record-added"]) == []  # waits for the digest
    assert channels_of(notify, by_kind["access-denied"]) == []  # inbox only, by default
    assert channels_of(notify, by_kind["break-glass"]) == ["email", "webhook"]
    with notify.engine.connect() as conn:
        waiting = conn.execute(select(digest_entries.c.notification_id)).scalars().all()
    assert waiting == [by_kind["record-added"]]


def test_a_consent_ending_within_a_week_is_warned_of_once(notify, patient, patient_token):
    now = datetime.now(UTC)
    notify.handle(
        facts.consent_granted(patient, consent_id="c-soon", ends_at=now + timedelta(days=5))
    )
    notify.handle(
        facts.consent_granted(patient, consent_id="c-later", ends_at=now + timedelta(days=30))
    )
    notify.handle(
        facts.consent_granted(patient, consent_id="c-gone", ends_at=now + timedelta(days=2))
    )
    notify.handle(facts.consent_ended("consent.revoked", patient, consent_id="c-gone"))

    assert warn_of_expiring_consents(notify.sessions, now=now) == 1
    assert warn_of_expiring_consents(notify.sessions, now=now + timedelta(hours=1)) == 0
    warnings = [n for n in notify.inbox(patient, patient_token) if n["kind"] == "consent-expiring"]
    assert len(warnings) == 1
    assert warnings[0]["details"]["consent_id"] == "c-soon"


def test_an_erased_patient_leaves_nothing_behind(notify, patient, patient_token, receiver):
    headers = bearer(patient_token)
    notify.client.post(
        f"/patients/{patient}/webhooks", json={"url": receiver().url}, headers=headers
    )
    notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={"email": "pat@example.org", "kinds": {"record-accessed": {"channels": ["email"]}}},
        headers=headers,
    )
    notify.handle(facts.access(patient))
    notify.handle(facts.consent_granted(patient))

    notify.handle(facts.patient_erased(patient))
    notify.handle(facts.access(patient))  # late news about them

    assert notify.inbox(patient, patient_token) == []
    prefs = notify.client.get(f"/patients/{patient}/notification-preferences", headers=headers)
    assert prefs.get_json()["email"] is None
    webhooks = notify.client.get(f"/patients/{patient}/webhooks", headers=headers)
    assert webhooks.get_json()["items"] == []
    assert notify.pending() == 0
