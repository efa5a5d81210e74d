"""Carry out consent commands: load the consent from its events, let the domain decide what
happens, append the events and the new read model row in one transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.consent import domain
from services.consent.domain import (
    Consent,
    ConsentEvent,
    ExpireConsent,
    GrantConsent,
    Grantee,
    RevokeConsent,
)
from services.consent.store import ConsentUnitOfWork
from shared.consent_rules import AccessRequest, Decision, decide
from shared.errors import Conflict, NotFound, describe_error

log = logging.getLogger(__name__)

Sessions = Callable[[], Session]


def now() -> datetime:
    return datetime.now(UTC)


def grant(sessions: Sessions, command: GrantConsent) -> Consent:
    """Record a new consent."""
    granted = domain.grant(command)
    consent = domain.apply(None, granted)
    with ConsentUnitOfWork(sessions) as uow:
        uow.consents.record(consent, (granted,))
        uow.commit()
    return consent


@dataclass(frozen=True)
class Outcome:
    consent: Consent  # its state afterwards
    events: tuple[ConsentEvent, ...]  # what this command caused (none: it was already so)


def change(
    sessions: Sessions,
    command: RevokeConsent | ExpireConsent,
    *,
    if_match: frozenset[int] | None = None,
) -> Outcome:
    """Revoke or expire a consent.

    `if_match` holds the versions the caller last saw (None: any). A request whose change is
    already made answers that state whatever version it names, as RFC 9110 §13.1.1 allows.
    """
    for _ in range(2):
        with ConsentUnitOfWork(sessions) as uow:
            consent = uow.consents.get(command.consent_id)
            if consent is None:
                raise NotFound(f"no consent {command.consent_id}")
            if isinstance(command, RevokeConsent):
                events = domain.revoke(consent, command)
            else:
                events = domain.expire(consent, command)
            if not events:
                return Outcome(consent, ())
            if if_match is not None and consent.version not in if_match:
                raise Conflict(
                    f"consent {consent.id} is at version {consent.version}; read it again"
                )
            changed = domain.evolve(consent, events)
            try:
                uow.consents.record(changed, events)
                uow.commit()
            except IntegrityError:
                # Another writer took this version first: decide again on what they wrote.
                continue
            return Outcome(changed, events)
    raise Conflict(f"consent {command.consent_id} is changing; try again")


def decide_access(sessions: Sessions, request: AccessRequest) -> Decision:
    """Apply the consent rule to the consents naming the practitioner or their organization."""
    grantees = [Grantee("practitioner", request.practitioner)]
    if request.org:
        grantees.append(Grantee("organization", request.org))
    with ConsentUnitOfWork(sessions) as uow:
        consents = uow.consents.of_patient(request.patient, grantees=grantees)
    return decide(request, [consent.terms() for consent in consents])


def expire_due(sessions: Sessions, at: datetime) -> int:
    """Expire every active consent whose period ended by `at`; answer how many this call did."""
    with ConsentUnitOfWork(sessions) as uow:
        due = uow.consents.due_for_expiry(at)
    expired = 0
    for consent_id in due:
        # Another worker may get there first; then this one finds it expired and does nothing.
        expired += len(change(sessions, ExpireConsent(consent_id, at)).events)
    return expired


def expiry_job(
    sessions: Sessions, interval_seconds: float = 1.0, clock: Callable[[], datetime] = now
) -> Callable[[threading.Event], None]:
    """The worker's scheduler: expire what is due every `interval_seconds` until stopped."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                expired = expire_due(sessions, clock())
                if expired:
                    log.info("expired %d consent(s)", expired)
            except Exception as err:
                # The database may be away for a while: the next tick tries again.
                log.warning("consent expiry: %s", describe_error(err))
            stop.wait(interval_seconds)

    return run
