"""Facts as the other services write them, for the audit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from shared.events import Event, new_event


def access(
    patient: str,
    *,
    actor: str,
    org: str | None = None,
    outcome: str = "permit",
    record_ids: tuple[str, ...] = ("rec-1",),
    purpose: str = "TREAT",
    consent_ids: tuple[str, ...] = (),
    break_glass_reason: str | None = None,
    break_glass_note: str | None = None,
    action: str = "read",
    time: datetime | None = None,
) -> Event:
    """A `record.accessed` (or `access.denied`, or `record.exported`) fact."""
    role = actor.partition(":")[0]
    short = (
        "access.denied"
        if outcome == "deny"
        else "record.exported"
        if action == "export"
        else "record.accessed"
    )
    return new_event(
        short,
        source_service="records",
        subject=patient,
        actor=actor,
        time=time,
        data={
            "patient": patient,
            "actor": actor,
            "role": role,
            "org": org,
            "action": action,
            "record_ids": list(record_ids),
            "categories": ["Observation"],
            "purpose": purpose,
            "consent_ids": list(consent_ids),
            "break_glass_reason": break_glass_reason,
            "break_glass_note": break_glass_note,
            "outcome": outcome,
            "reason": None if outcome == "permit" else "no consent covers it",
        },
    )


def consent_granted(patient: str, *, grantee: str = "org-a") -> Event:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "consent_id": str(uuid4()),
        "patient": patient,
        "version": 1,
        "grantee": {"type": "organization", "id": grantee},
        "actions": ["read"],
        "categories": ["*"],
        "security_labels": [],
        "purposes": ["TREAT"],
        "period": {"start": now.isoformat(), "end": (now + timedelta(days=30)).isoformat()},
    }
    return new_event(
        "consent.granted",
        source_service="consent",
        subject=patient,
        actor=f"patient:{patient}",
        data=data,
    )


def record_created(patient: str, *, author: str = "dr-lee", org: str = "org-a") -> Event:
    return new_event(
        "record.created",
        source_service="records",
        subject=patient,
        actor=f"practitioner:{author}",
        data={
            "patient": patient,
            "record_id": str(uuid4()),
            "version": 1,
            "category": "Observation",
            "source": "ehr",
            "author": author,
            "author_org": org,
            "content": {"key_id": "k1", "nonce": "bm9uY2U=", "ciphertext": "c2VjcmV0"},
            "changed_at": datetime.now(UTC).isoformat(),
        },
    )
