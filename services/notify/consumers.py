"""Handlers of records, access and consent events (reminders falling due among them): at most
one notification per fact, and reads by one reader for one purpose within a window folded
into one.

The inbox already makes a redelivered event a no-op; the unique `source_event_id` of a
notification, and the `folded_reads` a fold counts, keep it so when the same fact is replayed
under another consumer group.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from services.notify.domain import READ_WINDOW, ConsentWindow, notice_for
from services.notify.store import Repositories
from shared.events import Event, type_name
from shared.inbox import BatchHandler, Fact, Handler, Origin


def _notify(repos: Repositories, event: Event, consent: ConsentWindow | None = None) -> None:
    notice = notice_for(event, consent=consent)
    if notice is not None:
        repos.notify(notice, now=datetime.now(UTC))


def _on_access(read_window: timedelta) -> BatchHandler:
    def handle_all(session: Session, facts: Sequence[Fact]) -> None:
        """Someone read, searched, exported, or was refused the patient's records."""
        notices = [notice for notice in (notice_for(e) for e, _ in facts) if notice is not None]
        Repositories(session).notify_all(notices, now=datetime.now(UTC), read_window=read_window)

    return BatchHandler(handle_all)


def on_record_created(session: Session, event: Event, origin: Origin) -> None:
    _notify(Repositories(session), event)


def on_consent_granted(session: Session, event: Event, origin: Origin) -> None:
    repos = Repositories(session)
    data = event.data
    if repos.is_erased(data["patient"]):
        return
    repos.consents.granted(
        ConsentWindow(
            consent_id=data["consent_id"],
            patient=data["patient"],
            grantee_type=data["grantee"]["type"],
            grantee_id=data["grantee"]["id"],
            ends_at=datetime.fromisoformat(data["period"]["end"]),
        )
    )
    _notify(repos, event)


def _on_consent_ended(status: str) -> Handler:
    def handle(session: Session, event: Event, origin: Origin) -> None:
        repos = Repositories(session)
        consent_id = event.data["consent_id"]
        _notify(repos, event, repos.consents.get(consent_id))
        repos.consents.ended(consent_id, status)

    return handle


def on_reminder_due(session: Session, event: Event, origin: Origin) -> None:
    _notify(Repositories(session), event)


def on_patient_erased(session: Session, event: Event, origin: Origin) -> None:
    Repositories(session).erase(event.data["patient"], now=datetime.now(UTC))


def handlers(*, read_window: timedelta = READ_WINDOW) -> dict[str, Handler]:
    """Notify's handler of each event type; reads within `read_window` fold together."""
    on_access = _on_access(read_window)
    return {
        type_name("record.accessed"): on_access,
        type_name("access.denied"): on_access,
        type_name("record.exported"): on_access,
        type_name("record.created"): on_record_created,
        type_name("consent.granted"): on_consent_granted,
        type_name("consent.revoked"): _on_consent_ended("revoked"),
        type_name("consent.expired"): _on_consent_ended("expired"),
        type_name("reminder.due"): on_reminder_due,
        type_name("patient.erased"): on_patient_erased,
    }
