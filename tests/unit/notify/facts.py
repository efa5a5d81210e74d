"""Events as the other services write them, for notify's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.events import Event, new_event

SEALED = {"key_id": "k1", "nonce": "bm9uY2U=", "ciphertext": "c2VjcmV0"}


def access(
    patient: str,
    *,
    actor: str = "practitioner:dr-lee",
    role: str = "practitioner",
    org: str | None = "org-a",
    outcome: str = "permit",
    action: str = "read",
    record_ids: tuple[str, ...] = ("r-1",),
    categories: tuple[str, ...] = ("Observation",),
    purpose: str = "TREAT",
    consent_ids: tuple[str, ...] = ("c-1",),
    break_glass_reason: str | None = None,
    break_glass_note: str | None = None,
    reason: str | None = None,
) -> Event:
    if outcome == "deny":
        short = "access.denied"
    else:
        short = "record.exported" if action == "export" else "record.accessed"
    return new_event(
        short,
        source_service="records",
        subject=patient,
        actor=actor,
        data={
            "patient": patient,
            "actor": actor,
            "role": role,
            "org": org,
            "action": action,
            "record_ids": list(record_ids),
            "categories": list(categories),
            "purpose": purpose,
            "consent_ids": list(consent_ids),
            "break_glass_reason": break_glass_reason,
            "break_glass_note": break_glass_note,
            "outcome": outcome,
            "reason": reason,
        },
    )


def record_created(
    patient: str,
    *,
    source: str = "ehr",
    author: str = "practitioner:dr-lee",
    author_org: str | None = "org-a",
    category: str = "Observation",
    record_id: str = "r-9",
) -> Event:
    return new_event(
        "record.created",
        source_service="records",
        subject=patient,
        actor=author if source == "ehr" else f"patient:{patient}",
        data={
            "patient": patient,
            "record_id": record_id,
            "version": 1,
            "category": category,
            "source": source,
            "author": author if source == "ehr" else f"patient:{patient}",
            "author_org": author_org if source == "ehr" else None,
            "content": SEALED,
            "changed_at": datetime.now(UTC),
        },
    )


def consent_granted(
    patient: str,
    *,
    consent_id: str = "c-1",
    actor: str = "admin:ops",
    ends_at: datetime | None = None,
    grantee: dict[str, str] | None = None,
    security_labels: tuple[str, ...] = (),
) -> Event:
    now = datetime.now(UTC)
    return new_event(
        "consent.granted",
        source_service="consent",
        subject=patient,
        actor=actor,
        data={
            "consent_id": consent_id,
            "patient": patient,
            "version": 1,
            "grantee": grantee or {"type": "practitioner", "id": "dr-lee"},
            "actions": ["read"],
            "categories": ["Observation", "Condition"],
            "security_labels": list(security_labels),
            "purposes": ["TREAT"],
            "period": {"start": now, "end": ends_at or now + timedelta(days=90)},
        },
    )


def consent_ended(
    short: str, patient: str, *, consent_id: str = "c-1", actor: str = "system"
) -> Event:
    return new_event(
        short,
        source_service="consent",
        subject=patient,
        actor=actor,
        data={"consent_id": consent_id, "patient": patient, "version": 2},
    )


def patient_erased(patient: str, actor: str | None = None) -> Event:
    by = actor or f"patient:{patient}"
    return new_event(
        "patient.erased",
        source_service="records",
        subject=patient,
        actor=by,
        data={"patient": patient, "erased_by": by},
    )
