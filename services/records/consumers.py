"""The local consent projection: reads are enforced against it, never by asking the consent
service at read time (DESIGN.md "Enforcement").

`patient.erased` needs no handler here: records is where it comes from.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from services.records.store import Consents
from shared.consent_rules import ConsentTerms
from shared.events import Event, type_name
from shared.inbox import Handler, Origin

log = logging.getLogger(__name__)


def on_consent_granted(session: Session, event: Event, origin: Origin) -> None:
    data = event.data
    terms = ConsentTerms(
        id=data["consent_id"],
        patient=data["patient"],
        grantee_type=data["grantee"]["type"],
        grantee_id=data["grantee"]["id"],
        actions=frozenset(data["actions"]),
        categories=frozenset(data["categories"]),
        security_labels=frozenset(data["security_labels"]),
        purposes=frozenset(data["purposes"]),
        start=datetime.fromisoformat(data["period"]["start"]),
        end=datetime.fromisoformat(data["period"]["end"]),
    )
    Consents(session).grant(terms, version=data["version"])


def _ended(status: str) -> Handler:
    def on_consent_ended(session: Session, event: Event, origin: Origin) -> None:
        known = Consents(session).end(
            consent_id=event.data["consent_id"], status=status, version=event.data["version"]
        )
        if not known:
            # Grants precede their end on the patient's partition; an end without one is a
            # consent this projection never saw granted (or a stale version): nothing to end.
            log.info("consent %s %s: not in the projection", event.data["consent_id"], status)

    on_consent_ended.__name__ = f"on_consent_{status}"
    return on_consent_ended


on_consent_revoked = _ended("revoked")
on_consent_expired = _ended("expired")

HANDLERS: dict[str, Handler] = {
    type_name("consent.granted"): on_consent_granted,
    type_name("consent.revoked"): on_consent_revoked,
    type_name("consent.expired"): on_consent_expired,
}
