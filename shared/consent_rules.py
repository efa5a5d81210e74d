"""The consent rule: may this grantee do this to this kind of record, now, for this purpose?

One pure function, `decide`, used by the consent service's `/access-decisions` and by the
records service against its local projection of consents, so the two can never disagree.
Sensitive data (records with security labels) is shared only when the consent names every
one of its labels; `*` covers every category, never a label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ConsentTerms:
    """What one consent allows, as the decision needs it."""

    id: str
    patient: str
    grantee_type: str  # "practitioner" | "organization"
    grantee_id: str
    actions: frozenset[str]
    categories: frozenset[str]  # resource types, or {"*"}
    security_labels: frozenset[str]
    purposes: frozenset[str]
    start: datetime
    end: datetime
    status: str = "active"  # "active" | "revoked" | "expired"


@dataclass(frozen=True)
class AccessRequest:
    patient: str
    practitioner: str
    org: str | None
    action: str
    category: str
    security_labels: frozenset[str]
    purpose: str
    at: datetime


@dataclass(frozen=True)
class Decision:
    permit: bool
    consent_ids: tuple[str, ...] = ()
    reason: str | None = None
    misses: tuple[str, ...] = field(default=(), compare=False)


def _grantee_matches(consent: ConsentTerms, request: AccessRequest) -> bool:
    if consent.grantee_type == "practitioner":
        return consent.grantee_id == request.practitioner
    return request.org is not None and consent.grantee_id == request.org


def why_not(consent: ConsentTerms, request: AccessRequest) -> str | None:
    """The first reason `consent` does not cover `request`, or None when it does."""
    if consent.patient != request.patient or not _grantee_matches(consent, request):
        return "no consent names this grantee"
    if consent.status != "active":
        return f"consent {consent.id} is {consent.status}"
    if not consent.start <= request.at < consent.end:
        past = request.at >= consent.end
        return f"consent {consent.id} {'has expired' if past else 'has not started'}"
    if request.action not in consent.actions:
        return f"consent {consent.id} does not allow {request.action}"
    if "*" not in consent.categories and request.category not in consent.categories:
        return f"consent {consent.id} does not cover {request.category}"
    unnamed = sorted(request.security_labels - consent.security_labels)
    if unnamed:
        return f"consent {consent.id} does not name the label(s) {', '.join(unnamed)}"
    if request.purpose not in consent.purposes:
        return f"consent {consent.id} does not allow purpose {request.purpose}"
    return None


def decide(request: AccessRequest, consents: Iterable[ConsentTerms]) -> Decision:
    """Permit when at least one consent covers the request; name every one that does."""
    covering: list[str] = []
    misses: list[str] = []
    for consent in consents:
        reason = why_not(consent, request)
        if reason is None:
            covering.append(consent.id)
        elif reason != "no consent names this grantee":
            misses.append(reason)
    if covering:
        return Decision(True, tuple(sorted(covering)))
    reason = misses[0] if misses else "no consent names this grantee"
    return Decision(False, (), reason, tuple(misses))
