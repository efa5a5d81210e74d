"""What the consent service does with other services' events: one handler per event type."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from services.consent import domain
from services.consent.store import ConsentRepository
from shared.events import Event, type_name
from shared.inbox import Handler, Origin


def on_patient_erased(session: Session, event: Event, _origin: Origin) -> None:
    """Revoke every active consent of an erased patient (the consent history stays: it is
    the audit metadata of who was allowed to see what)."""
    consents = ConsentRepository(session)
    at = datetime.now(UTC)
    for active in consents.of_patient(event.data["patient"], statuses=["active"]):
        consent = consents.get(active.id)
        if consent is None:
            continue
        events = domain.revoke_on_erasure(consent, at)
        if events:
            consents.record(domain.evolve(consent, events), events)


HANDLERS: dict[str, Handler] = {
    type_name("patient.erased"): on_patient_erased,
}
