"""The consent aggregate: its commands, its events, and its state as the fold of its events.

Pure: no I/O, no clock. Commands carry the time and who asks; the functions answer the events
a command causes (none when it changes nothing, which makes revocation idempotent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.auth import Principal
from shared.consent_rules import ConsentTerms
from shared.errors import InvalidInput, PermissionDenied

SYSTEM = "system"
STATUSES = ("active", "revoked", "expired")
# Patient and grantee ids are FHIR ids, so that they make valid FHIR references.
FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}\Z"
NOT_A_FHIR_ID = "not a FHIR id (A-Z a-z 0-9 - ., 1-64)"


@dataclass(frozen=True)
class Grantee:
    type: str  # "practitioner" | "organization"
    id: str


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantConsent:
    consent_id: str
    patient: str
    grantee: Grantee
    actions: frozenset[str]
    categories: frozenset[str]
    security_labels: frozenset[str]
    purposes: frozenset[str]
    start: datetime | None  # None: from now on
    end: datetime
    at: datetime
    by: Principal


@dataclass(frozen=True)
class RevokeConsent:
    consent_id: str
    at: datetime
    by: Principal


@dataclass(frozen=True)
class ExpireConsent:
    consent_id: str
    at: datetime


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentGranted:
    consent_id: str
    patient: str
    version: int
    grantee: Grantee
    actions: tuple[str, ...]
    categories: tuple[str, ...]
    security_labels: tuple[str, ...]
    purposes: tuple[str, ...]
    period: Period
    at: datetime
    by: str  # the actor, "<role>:<sub>"


@dataclass(frozen=True)
class ConsentRevoked:
    consent_id: str
    patient: str
    version: int
    at: datetime
    by: str


@dataclass(frozen=True)
class ConsentExpired:
    consent_id: str
    patient: str
    version: int
    at: datetime
    by: str = SYSTEM


ConsentEvent = ConsentGranted | ConsentRevoked | ConsentExpired


# --- the aggregate ----------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    id: str
    patient: str
    grantee: Grantee
    actions: tuple[str, ...]
    categories: tuple[str, ...]
    security_labels: tuple[str, ...]
    purposes: tuple[str, ...]
    period: Period
    status: str
    version: int
    granted_at: datetime
    updated_at: datetime

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def terms(self) -> ConsentTerms:
        """What this consent allows, as `shared.consent_rules.decide` needs it."""
        return ConsentTerms(
            id=self.id,
            patient=self.patient,
            grantee_type=self.grantee.type,
            grantee_id=self.grantee.id,
            actions=frozenset(self.actions),
            categories=frozenset(self.categories),
            security_labels=frozenset(self.security_labels),
            purposes=frozenset(self.purposes),
            start=self.period.start,
            end=self.period.end,
            status=self.status,
        )


def apply(consent: Consent | None, event: ConsentEvent) -> Consent:
    """The state after `event`."""
    if isinstance(event, ConsentGranted):
        if consent is not None:
            raise ValueError(f"consent {event.consent_id} was granted twice")
        return Consent(
            id=event.consent_id,
            patient=event.patient,
            grantee=event.grantee,
            actions=event.actions,
            categories=event.categories,
            security_labels=event.security_labels,
            purposes=event.purposes,
            period=event.period,
            status="active",
            version=event.version,
            granted_at=event.at,
            updated_at=event.at,
        )
    if consent is None or event.version != consent.version + 1:
        raise ValueError(f"consent {event.consent_id}: version {event.version} is out of order")
    status = "revoked" if isinstance(event, ConsentRevoked) else "expired"
    return replace(consent, status=status, version=event.version, updated_at=event.at)


def evolve(consent: Consent, events: Iterable[ConsentEvent]) -> Consent:
    """The state of `consent` after `events`."""
    for event in events:
        consent = apply(consent, event)
    return consent


def fold(events: Iterable[ConsentEvent]) -> Consent | None:
    """The state of a consent from its events in version order (None for no events)."""
    consent: Consent | None = None
    for event in events:
        consent = apply(consent, event)
    return consent


# --- deciding what a command causes ----------------------------------------------------


def may_manage(principal: Principal, patient: str) -> bool:
    """The patient manages the consents on their own chart; an admin manages any."""
    return principal.is_patient(patient) or principal.role == "admin"


def ensure_may_grant(principal: Principal, patient: str) -> None:
    if not may_manage(principal, patient):
        raise PermissionDenied("a patient grants consents on their own chart only")


def grant(command: GrantConsent) -> ConsentGranted:
    """Grant a new consent, or refuse a grant the patient could not mean."""
    ensure_may_grant(command.by, command.patient)
    start = command.start or command.at
    problems: dict[str, list[str]] = {}
    if not re.match(FHIR_ID, command.patient):
        problems["patient"] = [NOT_A_FHIR_ID]
    if command.end <= start:
        problems["period"] = ["period.end must be after period.start"]
    elif command.end <= command.at:
        problems["period"] = ["the period is in the past"]
    for name in ("actions", "categories", "purposes"):
        if not getattr(command, name):
            problems[name] = ["name at least one"]
    if problems:
        raise InvalidInput("the consent cannot be granted as asked", errors=problems)
    return ConsentGranted(
        consent_id=command.consent_id,
        patient=command.patient,
        version=1,
        grantee=command.grantee,
        actions=tuple(sorted(command.actions)),
        categories=tuple(sorted(command.categories)),
        security_labels=tuple(sorted(command.security_labels)),
        purposes=tuple(sorted(command.purposes)),
        # Kept in UTC, so that every reader sees the same instants the same way.
        period=Period(start.astimezone(UTC), command.end.astimezone(UTC)),
        at=command.at,
        by=command.by.actor,
    )


def revoke(consent: Consent, command: RevokeConsent) -> tuple[ConsentEvent, ...]:
    """Revoke an active consent; a revoked or expired one stays as it is."""
    if not may_manage(command.by, consent.patient):
        raise PermissionDenied("only the patient who granted a consent revokes it")
    return _revoked(consent, command.at, command.by.actor)


def revoke_on_erasure(consent: Consent, at: datetime) -> tuple[ConsentEvent, ...]:
    """An erased patient shares nothing any more: revoke the consent if it is active."""
    return _revoked(consent, at, SYSTEM)


def _revoked(consent: Consent, at: datetime, by: str) -> tuple[ConsentEvent, ...]:
    if consent.status != "active":
        return ()
    return (ConsentRevoked(consent.id, consent.patient, consent.version + 1, at, by),)


def expire(consent: Consent, command: ExpireConsent) -> tuple[ConsentEvent, ...]:
    """Expire an active consent whose period has ended; anything else stays as it is."""
    if consent.status != "active" or command.at < consent.period.end:
        return ()
    return (ConsentExpired(consent.id, consent.patient, consent.version + 1, command.at),)


# --- who may read -----------------------------------------------------------------------


def grantees_visible_to(principal: Principal, patient: str) -> tuple[Grantee, ...] | None:
    """The grantees whose consents on `patient`'s chart `principal` may read (None: all).

    The patient and admins read them all; a practitioner reads the consents that name them
    or their organization, so they can see what they were given.
    """
    if may_manage(principal, patient):
        return None
    if principal.role == "practitioner":
        visible = [Grantee("practitioner", principal.sub)]
        if principal.org:
            visible.append(Grantee("organization", principal.org))
        return tuple(visible)
    raise PermissionDenied("only the patient, an admin or a grantee reads these consents")


def ensure_may_read(principal: Principal, consent: Consent) -> None:
    visible = grantees_visible_to(principal, consent.patient)
    if visible is not None and consent.grantee not in visible:
        raise PermissionDenied("only the patient, an admin or the grantee reads this consent")


def ensure_may_ask_at_all(principal: Principal) -> None:
    """Only practitioners and admins ask for access decisions (whose, the question says)."""
    if principal.role not in ("practitioner", "admin"):
        raise PermissionDenied("only practitioners and admins ask for access decisions")


def ensure_may_ask(principal: Principal, practitioner: str, org: str | None) -> None:
    """Practitioners ask about their own access; admins (and services) about anyone's."""
    if principal.role == "admin":
        return
    if principal.role == "practitioner" and (practitioner, org) == (principal.sub, principal.org):
        return
    raise PermissionDenied("a practitioner asks about their own access only")
