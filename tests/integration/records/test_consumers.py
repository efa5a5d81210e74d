"""The consent projection takes each event once, and in version order."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.records.store import consents
from tests.integration.records.support import consent_ended, consent_granted


def projected(records, consent_id):
    with records.sessions() as session:
        return session.execute(
            select(consents.c.status, consents.c.version).where(consents.c.consent_id == consent_id)
        ).all()


def test_delivering_the_same_consent_events_twice_projects_them_once(records):
    granted = consent_granted(f"pat-{uuid.uuid4()}", ("practitioner", "dr-b"))
    revoked = consent_ended("consent.revoked", granted)

    handled = [records.project(e) for e in (granted, granted, revoked, revoked)]

    assert handled == [True, False, True, False]
    assert projected(records, granted.data["consent_id"]) == [("revoked", 2)]


def test_a_grant_replayed_after_its_revocation_does_not_revive_the_consent(records):
    granted = consent_granted(f"pat-{uuid.uuid4()}", ("practitioner", "dr-b"))
    records.project(granted)
    records.project(consent_ended("consent.revoked", granted))

    # The same fact under a new event id, as a replay by another producer would bring it.
    replay = consent_granted(granted.data["patient"], ("practitioner", "dr-b"))
    replay.data["consent_id"] = granted.data["consent_id"]
    records.project(replay)

    assert projected(records, granted.data["consent_id"]) == [("revoked", 2)]


def test_an_expiry_is_projected(records):
    granted = consent_granted(f"pat-{uuid.uuid4()}", ("organization", "org-b"))
    records.project(granted)

    records.project(consent_ended("consent.expired", granted))

    assert projected(records, granted.data["consent_id"]) == [("expired", 2)]
