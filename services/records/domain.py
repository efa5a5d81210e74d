"""The chart's rules: who may write and amend, who may read what, and the facts they cause.

Pure: no I/O. Enforcement follows DESIGN.md "Enforcement": the patient reads their whole
chart; a practitioner reads what their organization authored, what an active consent covers
(`shared.consent_rules.decide`, the one consent rule), or anything when they break the
glass; compliance and admin never read clinical content. SMART scopes bound all of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from uuid6 import uuid7

from services.records.resources import clinical_date, matches_token
from shared.auth import Principal
from shared.break_glass import BY_CODE as BREAK_GLASS_REASONS
from shared.break_glass import CODES as BREAK_GLASS_CODES
from shared.break_glass import MAX_NOTE_LENGTH
from shared.consent_rules import AccessRequest, ConsentTerms, decide
from shared.errors import Conflict, InvalidInput, PermissionDenied, PreconditionFailed
from shared.events import PURPOSES, Event, new_event
from shared.fhir import DateRange

SERVICE = "records"
DEFAULT_PURPOSE = "TREAT"
# Breaking the glass is an emergency: unless told otherwise, the purpose is emergency treatment.
BREAK_GLASS_PURPOSE = "ETREAT"
_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The SMART context each role's scopes must be written in (SMART App Launch v2, "Scopes").
_SCOPE_CONTEXT = {"patient": "patient", "practitioner": "user", "admin": "system"}

_INSTANT = timedelta(microseconds=1)

CURRENT = "current"
ENTERED_IN_ERROR = "entered-in-error"


def patient_id(text: str) -> str:
    """A chart's patient id as given in a path, or `InvalidInput`."""
    if not _PATIENT_ID.match(text):
        raise InvalidInput("invalid patient id")
    return text


def scope_allows(principal: Principal, resource: str, permission: str) -> bool:
    """Whether the token grants `permission` (c, r, u, d, s) on `resource` in its role's context."""
    context = _SCOPE_CONTEXT.get(principal.role)
    return any(s.context == context and s.allows(resource, permission) for s in principal.scopes)


Restriction = tuple[tuple[str, str], ...]


def scope_terms(
    principal: Principal, resource: str, permission: str
) -> tuple[Restriction, ...] | None:
    """None when a scope grants `permission` on every `resource`; else the search restrictions
    of the granular scopes that grant it on some (a resource must match one of them)."""
    context = _SCOPE_CONTEXT.get(principal.role)
    granting = [
        s for s in principal.scopes if s.context == context and s.allows(resource, permission)
    ]
    if not granting or any(not s.restriction for s in granting):
        return None
    return tuple(s.restriction for s in granting)


def within_scope(category: str, content: dict[str, Any], terms: Sequence[Restriction]) -> bool:
    """Whether a resource matches every criterion of one of the restrictions.

    Only `code` and `category` criteria are read; a scope restricted by anything else grants
    nothing, rather than more than it says."""
    return any(
        all(matches_token(category, content, name, value) for name, value in restriction)
        for restriction in terms
    )


@dataclass(frozen=True)
class Criteria:
    """What a FHIR search asks of each record beyond what the store filters on."""

    types: frozenset[str] | None = None  # `_type` of $everything
    ids: frozenset[str] | None = None  # `_id`
    tokens: tuple[tuple[str, str], ...] = ()  # (`code` | `category`, value)
    dates: tuple[DateRange, ...] = ()
    last_updated: tuple[DateRange, ...] = ()
    by_date: bool = False  # `_sort=date` or `-date`: the date must be read

    @property
    def needs_content(self) -> bool:
        return bool(self.tokens or self.dates or self.by_date)

    def admits_record(self, record: Record) -> bool:
        """What can be told without opening the record."""
        if self.types is not None and record.category not in self.types:
            return False
        if self.ids is not None and record.id not in self.ids:
            return False
        updated = (record.updated_at, record.updated_at + _INSTANT)
        return all(d.matches(*updated) for d in self.last_updated)

    def admits(self, category: str, content: dict[str, Any]) -> bool:
        """What needs the record's content."""
        if not all(matches_token(category, content, n, v) for n, v in self.tokens):
            return False
        if self.dates:
            span = clinical_date(category, content)
            return span is not None and all(d.matches(*span) for d in self.dates)
        return True


def require_scope(principal: Principal, resource: str, permission: str) -> None:
    if not scope_allows(principal, resource, permission):
        raise PermissionDenied(f"the token's scopes do not allow '{permission}' on {resource}")


# --- writing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A chart entry as the service knows it without opening its content."""

    id: str
    patient: str
    category: str
    source: str  # "ehr" | "phr"
    author: str  # the actor who wrote it
    author_org: str | None
    security: frozenset[str]
    version: int
    status: str
    created_at: datetime
    updated_at: datetime

    def amended(
        self,
        *,
        by: Principal,
        category: str,
        security: frozenset[str],
        at: datetime,
        expected_version: int | None = None,
    ) -> Record:
        """The next version, written by the record's author."""
        self._require_author(by, "amend")
        if self.status != CURRENT:
            raise Conflict(f"record {self.id} was entered in error and cannot be amended")
        if category != self.category:
            raise InvalidInput(f"an amendment of a {self.category} must be a {self.category}")
        if expected_version is not None and expected_version != self.version:
            raise PreconditionFailed(f"record {self.id} is at version {self.version}")
        return replace(self, version=self.version + 1, security=security, updated_at=at)

    def entered_in_error(self, *, by: Principal, at: datetime) -> Record:
        """The record marked as entered in error (it stays, marked)."""
        self._require_author(by, "mark")
        if self.status == ENTERED_IN_ERROR:
            raise Conflict(f"record {self.id} is already marked entered in error")
        return replace(self, status=ENTERED_IN_ERROR, updated_at=at)

    def _require_author(self, principal: Principal, verb: str) -> None:
        if principal.actor != self.author:
            raise PermissionDenied(f"only the author of record {self.id} may {verb} it")


def writer_source(principal: Principal, patient: str) -> tuple[str, str | None]:
    """(source, org) of what `principal` writes to the chart: the patient's own PHR entries,
    a practitioner's EHR entries for their organization; nobody else writes."""
    if principal.is_patient(patient):
        return "phr", None
    if principal.role == "practitioner":
        return "ehr", principal.org
    if principal.role == "patient":
        raise PermissionDenied("a patient writes only to their own chart")
    raise PermissionDenied(f"the {principal.role} role does not write clinical records")


def new_record(
    principal: Principal, *, patient: str, category: str, security: frozenset[str], at: datetime
) -> Record:
    """A first version written by `principal`: the patient's own PHR entry, or an EHR entry
    of the practitioner's organization."""
    source, org = writer_source(principal, patient)
    return Record(
        id=str(uuid7()),
        patient=patient,
        category=category,
        source=source,
        author=principal.actor,
        author_org=org,
        security=security,
        version=1,
        status=CURRENT,
        created_at=at,
        updated_at=at,
    )


def may_erase(principal: Principal, patient: str) -> None:
    """Erasure is the patient's right, exercised by them or by an admin."""
    if not (principal.is_patient(patient) or principal.role == "admin"):
        raise PermissionDenied("only the patient or an admin may erase a chart")
    require_scope(principal, "Patient", "d")


def record_changed(short_type: str, record: Record, sealed: dict[str, str], actor: str) -> Event:
    """`record.created` or `record.amended`: metadata in clear, content sealed. The security
    labels stay in the sealed content (`meta.security`): a label alone (`PSY`, `HIV`) says
    what kind of sensitive data a patient has, and no consumer of these events needs it."""
    return new_event(
        short_type,
        source_service=SERVICE,
        subject=record.patient,
        actor=actor,
        data={
            "patient": record.patient,
            "record_id": record.id,
            "version": record.version,
            "category": record.category,
            "source": record.source,
            "author": record.author,
            "author_org": record.author_org,
            "content": sealed,
            "changed_at": record.updated_at,
        },
    )


def record_entered_in_error(record: Record, actor: str) -> Event:
    return new_event(
        "record.entered-in-error",
        source_service=SERVICE,
        subject=record.patient,
        actor=actor,
        data={
            "patient": record.patient,
            "record_id": record.id,
            "version": record.version,
            "category": record.category,
            "author": record.author,
            "author_org": record.author_org,
        },
    )


def patient_erased(patient: str, actor: str) -> Event:
    return new_event(
        "patient.erased",
        source_service=SERVICE,
        subject=patient,
        actor=actor,
        data={"patient": patient, "erased_by": actor},
    )


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who reads, for what purpose, and whether they broke the glass: why (a code of
    `shared.break_glass.CODES`) and, if they said more, their note. The note is clinical free
    text: it is sealed before it reaches a fact, and kept out of reprs (and so out of logs)."""

    principal: Principal
    purpose: str = DEFAULT_PURPOSE
    break_glass_reason: str | None = None
    break_glass_note: str | None = field(default=None, repr=False)


def reader_from_headers(
    principal: Principal,
    purpose: str | None,
    break_glass_reason: str | None,
    break_glass_note: str | None = None,
) -> Reader:
    """The reader of a request, from `X-Purpose-Of-Use`, `X-Break-Glass-Reason` (a code) and
    `X-Break-Glass-Note` (free text)."""
    reason = break_glass_reason.strip() if break_glass_reason is not None else None
    note = break_glass_note.strip() if break_glass_note is not None else None
    if reason is not None and reason not in BREAK_GLASS_REASONS:
        raise InvalidInput(f"X-Break-Glass-Reason must be one of {', '.join(BREAK_GLASS_CODES)}")
    if note is not None:
        if reason is None:
            raise InvalidInput("X-Break-Glass-Note needs an X-Break-Glass-Reason")
        if not 0 < len(note) <= MAX_NOTE_LENGTH:
            raise InvalidInput(f"X-Break-Glass-Note must be 1 to {MAX_NOTE_LENGTH} characters")
    if reason is not None and note is None and BREAK_GLASS_REASONS[reason].needs_note:
        raise InvalidInput(f"X-Break-Glass-Reason {reason} needs an X-Break-Glass-Note")
    chosen = purpose.strip() if purpose else BREAK_GLASS_PURPOSE if reason else DEFAULT_PURPOSE
    if chosen not in PURPOSES:
        raise InvalidInput(f"X-Purpose-Of-Use must be one of {', '.join(PURPOSES)}")
    return Reader(principal, chosen, reason, note)


@dataclass(frozen=True)
class Verdict:
    """Whether one record may be shown to a reader, and on what grounds."""

    permit: bool
    basis: str | None = None  # "patient" | "author_org" | "consent" | "break_glass"
    consent_ids: tuple[str, ...] = ()
    reason: str | None = None


def chart_refusal(reader: Reader, patient: str) -> str | None:
    """Why `reader` may read nothing of this chart, or None when records decide."""
    principal = reader.principal
    if reader.break_glass_reason is not None and principal.role != "practitioner":
        return "only practitioners may break the glass"
    if principal.role == "patient":
        return None if principal.is_patient(patient) else "a patient reads only their own chart"
    if principal.role == "practitioner":
        return None
    return f"the {principal.role} role never reads clinical content"


def needs_consent(reader: Reader, record: Record) -> bool:
    """Whether only a consent can let `reader` see `record`."""
    principal = reader.principal
    return (
        principal.role == "practitioner"
        and reader.break_glass_reason is None
        and (record.author_org is None or record.author_org != principal.org)
    )


def verdict(
    reader: Reader,
    record: Record,
    consents: Sequence[ConsentTerms],
    *,
    at: datetime,
    permission: str = "r",
) -> Verdict:
    """May `reader` see `record` (assuming `chart_refusal` found nothing)?"""
    principal = reader.principal
    if not scope_allows(principal, record.category, permission):
        return Verdict(False, reason=f"the token's scopes do not allow reading {record.category}")
    if principal.role == "patient":
        return Verdict(True, "patient")
    if reader.break_glass_reason is not None:
        return Verdict(True, "break_glass")
    if not needs_consent(reader, record):
        return Verdict(True, "author_org")
    decision = decide(
        AccessRequest(
            patient=record.patient,
            practitioner=principal.sub,
            org=principal.org,
            action="read",
            category=record.category,
            security_labels=record.security,
            purpose=reader.purpose,
            at=at,
        ),
        consents,
    )
    if decision.permit:
        return Verdict(True, "consent", decision.consent_ids)
    return Verdict(False, reason=decision.reason)


@dataclass(frozen=True)
class Access:
    """The outcome of one read request, as its access event tells it."""

    action: str  # "read" | "search" | "vread" | "export" | OPEN_BREAK_GLASS_NOTE
    permit: bool
    record_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    consent_ids: tuple[str, ...] = ()
    reason: str | None = None

    @classmethod
    def refused(cls, action: str, reason: str, record_ids: Iterable[str] = ()) -> Access:
        return cls(action, False, tuple(record_ids), reason=reason)

    @classmethod
    def of(
        cls, action: str, shown: Sequence[tuple[Record, Verdict]], withheld: Sequence[Verdict]
    ) -> Access:
        """A search or export: permitted unless every matching record was withheld."""
        if withheld and not shown:
            return cls(action, False, reason=withheld[0].reason)
        return cls(
            action,
            True,
            tuple(r.id for r, _ in shown),
            tuple(sorted({r.category for r, _ in shown})),
            tuple(sorted({c for _, v in shown for c in v.consent_ids})),
            f"{len(withheld)} record(s) withheld" if withheld else None,
        )

    @property
    def event_type(self) -> str:
        if not self.permit:
            return "access.denied"
        return "record.exported" if self.action == "export" else "record.accessed"


# Compliance staff opening a break-glass note is an access fact of its own (DESIGN.md: every
# access is a fact), with this action: it names the chart, never the note's text.
OPEN_BREAK_GLASS_NOTE = "open-break-glass-note"
# HL7 v3 PurposeOfUse: reviewing an access is healthcare operations (compliance is one).
NOTE_REVIEW_PURPOSE = "HOPERAT"


def may_open_break_glass_note(principal: Principal) -> None:
    """Compliance staff open a break-glass note, to review the access it explains; nobody
    else does, the practitioner who wrote it included."""
    if principal.role != "compliance":
        raise PermissionDenied("only compliance staff may open a break-glass note")
    principal.require_scope("AuditEvent", "r")


def break_glass_note_opened(principal: Principal, patient: str) -> Event:
    """The fact of a break-glass note opened for review: who, whose chart. No content."""
    reader = Reader(principal, NOTE_REVIEW_PURPOSE)
    return access_event(reader, patient, Access(OPEN_BREAK_GLASS_NOTE, True))


def access_event(
    reader: Reader, patient: str, access: Access, sealed_note: str | None = None
) -> Event:
    """The fact of one read request: who, why, which records, the outcome. Never content:
    a break-glass note only as `sealed_note`, sealed with the patient's data key."""
    principal = reader.principal
    data: dict[str, Any] = {
        "patient": patient,
        "actor": principal.actor,
        "role": principal.role,
        "org": principal.org,
        "action": access.action,
        "record_ids": list(access.record_ids),
        "categories": list(access.categories),
        "purpose": reader.purpose,
        "consent_ids": list(access.consent_ids),
        "break_glass_reason": reader.break_glass_reason,
        "break_glass_note": sealed_note,
        "outcome": "permit" if access.permit else "deny",
        "reason": access.reason,
    }
    return new_event(
        access.event_type,
        source_service=SERVICE,
        subject=patient,
        actor=principal.actor,
        data=data,
    )
