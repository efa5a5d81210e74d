"""The audit trail's rules: what an entry says about a fact, how entries are chained, how a
chain is checked, and who may read what. Pure: no I/O.

Each Kafka topic-partition has its own chain. An entry's hash is
`SHA-256(prev_hash || JCS(entry))` (DESIGN.md, "audit"; JCS is RFC 8785), where `prev_hash`
is the raw 32 bytes of the previous entry's hash (32 zero bytes for the first) and `entry`
holds only what the event and its Kafka position determine, plus its place `seq` in the
chain. Nothing about when or by which process it was ingested goes in, so replaying the
topics from offset 0 reproduces every hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from shared import canonical, fact_signing
from shared.auth import ROLES, Principal
from shared.errors import InvalidInput, PermissionDenied
from shared.events import Event, event_type
from shared.inbox import Origin
from shared.telemetry import trace_id_of

GENESIS_HASH = "0" * 64
ACCESS_TYPES = (
    "caretrail.record.accessed.v1",
    "caretrail.access.denied.v1",
    "caretrail.record.exported.v1",
)
REVIEWED_TYPE = "caretrail.break-glass.reviewed.v1"
DISCLOSURE_YEARS = 6  # HIPAA accounting of disclosures, 45 CFR 164.528(a)
REVIEW_DECISIONS = ("justified", "unjustified")

# The action a fact records, for types whose data does not name one.
_ACTIONS = {
    "record.created": "create",
    "record.amended": "update",
    "record.entered-in-error": "update",
    "patient.erased": "erase",
    "consent.granted": "grant",
    "consent.revoked": "revoke",
    "consent.expired": "expire",
    "notification.delivered": "notify",
    "notification.failed": "notify",
    "reminder.due": "remind",
    "break-glass.reviewed": "review",
}


@dataclass(frozen=True)
class Entry:
    """One fact as the trail keeps it: ids, who, what, why and where it was read. No content."""

    event_id: str
    type: str
    time: str  # RFC 3339 UTC with microseconds, as `format_time` writes it
    actor: str
    role: str | None
    org: str | None
    patient: str
    action: str | None
    outcome: str | None
    purpose: str | None
    record_ids: tuple[str, ...]
    categories: tuple[str, ...]
    consent_ids: tuple[str, ...]
    break_glass_reason: str | None
    source: str
    trace_id: str | None
    topic: str
    partition: int
    offset: int
    seq: int = 0
    # The fact's signature by its source and the SHA-256 of its data (`shared.fact_signing`):
    # with them an entry shows offline that it came from a signed fact, though it keeps no
    # content. None in entries appended before facts were signed.
    signature: str | None = None
    data_digest: str | None = None
    # Why the access was refused (or what a permitted search withheld), as records said it.
    reason: str | None = None
    # A break-glass note as records sealed it with the patient's data key: opaque here, opened
    # only by records (for compliance staff), unreadable anywhere once the patient is erased.
    break_glass_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON sees it (lists for tuples); a shallow copy, unlike `asdict`,
        which deep-copies and took a third of a disclosures request."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((n, getattr(self, n)) for n in ENTRY_FIELDS)
        }

    def canonical(self) -> bytes:
        """The RFC 8785 form of the entry, the input of its hash."""
        return hashed_form(self.as_dict())


ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
# Fields the entry gained after trails were first chained. They enter the hash only when
# set, so an entry chained before them keeps its hash and old trails still verify.
LATER_FIELDS = ("signature", "data_digest", "reason", "break_glass_note")


def hashed_form(fields: Mapping[str, Any]) -> bytes:
    """The RFC 8785 form of an entry's fields as its hash covers them."""
    return canonical.dumps(
        {k: v for k, v in fields.items() if not (k in LATER_FIELDS and v is None)}
    )


@dataclass(frozen=True)
class ChainedEntry:
    entry: Entry
    prev_hash: str
    hash: str


def format_time(moment: datetime) -> str:
    """The one text form of a moment in the trail (UTC, microseconds, `Z`)."""
    if moment.tzinfo is None:  # SQLite hands back naive datetimes, stored as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_fields(event: Event, origin: Origin) -> dict[str, Any]:
    """What the trail keeps of `event`, read at `origin`, as JSON sees it: `Entry.as_dict()`
    but for `seq`, which `link` sets. A batch is chained from these, without an Entry each."""
    data: Mapping[str, Any] = event.data
    actor_role = event.actor.partition(":")[0] if ":" in event.actor else None
    record_ids = data.get("record_ids") or ([data["record_id"]] if "record_id" in data else [])
    consent_ids = data.get("consent_ids") or ([data["consent_id"]] if "consent_id" in data else [])
    categories = data.get("categories") or ([data["category"]] if "category" in data else [])
    return {
        "event_id": event.id,
        "type": event.type,
        "time": format_time(event.time),
        "actor": event.actor,
        "role": data.get("role") or actor_role,
        "org": data.get("org") or data.get("author_org"),
        "patient": data.get("patient") or event.subject,
        "action": data.get("action") or _ACTIONS.get(event.short_type),
        "outcome": data.get("outcome") or data.get("decision"),
        "purpose": data.get("purpose"),
        "record_ids": list(record_ids),
        "categories": [c for c in categories if c != "*"] or list(categories),
        "consent_ids": list(consent_ids),
        "break_glass_reason": data.get("break_glass_reason"),
        "source": event.source.removeprefix("caretrail/"),
        "trace_id": trace_id_of(event.traceparent),
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "reason": data.get("reason"),
        "break_glass_note": data.get("break_glass_note"),
        "signature": event.signature,
        "data_digest": event.data_digest if event.signature is not None else None,
    }


def signed_text(entry: Entry) -> bytes | None:
    """What the signature of the entry's fact covers, rebuilt from the entry (`None` for an
    entry of an unsigned fact). Every fact's subject is its patient."""
    if entry.data_digest is None:
        return None
    return fact_signing.signed_text(
        id=entry.event_id,
        source=fact_signing.SOURCE_PREFIX + entry.source,
        type=entry.type,
        subject=entry.patient,
        time=datetime.fromisoformat(entry.time),
        actor=entry.actor,
        digest=entry.data_digest,
    )


def entry_of(event: Event, origin: Origin) -> Entry:
    """What the trail keeps of `event`, read at `origin` (its `seq` is set on append)."""
    fields: dict[str, Any] = {
        name: tuple(value) if type(value) is list else value
        for name, value in entry_fields(event, origin).items()
    }
    return Entry(**fields)


def _hash(prev_hash: str, canonical_entry: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_entry).hexdigest()


def chain_hash(prev_hash: str, entry: Entry) -> str:
    return _hash(prev_hash, entry.canonical())


def link(fields: dict[str, Any], prev_seq: int, prev_hash: str) -> str:
    """Place `fields` (`entry_fields`) after the entry at `prev_seq` hashed `prev_hash`: set
    their `seq` and answer their hash, the hash `chained` gives the same entry."""
    fields["seq"] = prev_seq + 1
    return _hash(prev_hash, hashed_form(fields))


@dataclass(frozen=True)
class ChainHead:
    """Where a topic-partition's chain ends: its last `seq` and that entry's hash."""

    topic: str
    partition: int
    seq: int
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tip(head: ChainHead | None) -> tuple[int, str]:
    """What the next entry of a chain follows: its head's seq and hash, or the genesis."""
    return (head.seq, head.hash) if head else (0, GENESIS_HASH)


def chained(entry: Entry, head: ChainHead | None) -> ChainedEntry:
    """`entry` appended after `head` (the first of its chain when there is none)."""
    prev_seq, prev_hash = tip(head)
    placed = replace(entry, seq=prev_seq + 1)
    return ChainedEntry(placed, prev_hash, chain_hash(prev_hash, placed))


# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The verdict on one topic-partition's chain."""

    topic: str
    partition: int
    entries: int
    head_hash: str
    ok: bool
    first_bad_seq: int | None
    problem: str | None = None


@dataclass
class ChainCheck:
    """Walks one chain in `seq` order and remembers the first place it breaks.

    A missing `seq` is a deleted entry; an entry whose `prev_hash` is not the hash before it
    was moved, or follows an inserted one (when it links to the entry two places back); an
    entry whose hash is not its recomputed hash was edited. A chain that holds together but
    differs from its signed checkpoint had a whole tail rewritten.
    """

    topic: str
    partition: int
    signed: ChainHead | None = None
    entries: int = 0
    first_bad_seq: int | None = None
    problem: str | None = None
    _hashes: list[str] = field(default_factory=lambda: [GENESIS_HASH])
    _hash_at_signed_seq: str | None = None

    @property
    def head_hash(self) -> str:
        return self._hashes[-1]

    def add(self, stored: ChainedEntry) -> None:
        self.entries += 1
        if self.first_bad_seq is None:
            self._judge(stored, self.entries)
        if self.signed is not None and self.entries == self.signed.seq:
            self._hash_at_signed_seq = stored.hash
        self._hashes = [self._hashes[-1], stored.hash]

    def _judge(self, stored: ChainedEntry, expected_seq: int) -> None:
        if stored.entry.seq != expected_seq:
            self._fail(expected_seq, "an entry is missing here")
        elif stored.prev_hash != self._hashes[-1]:
            if len(self._hashes) == 2 and stored.prev_hash == self._hashes[0]:
                self._fail(expected_seq - 1, "an entry was inserted here")
            else:
                self._fail(expected_seq, "the entry does not follow the one before it")
        elif chain_hash(stored.prev_hash, stored.entry) != stored.hash:
            self._fail(expected_seq, "the entry was changed")

    def _fail(self, seq: int, problem: str) -> None:
        self.first_bad_seq, self.problem = seq, problem

    def report(self) -> ChainReport:
        if self.first_bad_seq is None and self.signed is not None:
            if self.signed.seq > self.entries:
                self._fail(self.entries + 1, "entries of the signed checkpoint are missing")
            elif self._hash_at_signed_seq != self.signed.hash:
                self._fail(self.signed.seq, "the chain differs from the signed checkpoint")
        return ChainReport(
            self.topic,
            self.partition,
            self.entries,
            self.head_hash,
            self.first_bad_seq is None,
            self.first_bad_seq,
            self.problem,
        )


def check_chains(
    entries: Iterable[ChainedEntry], signed: Mapping[tuple[str, int], ChainHead] | None = None
) -> list[ChainReport]:
    """One report per chain of `entries` (ordered by topic, partition, seq), each also held
    to its head in the latest signed checkpoint; a signed chain with no entries left fails."""
    signed = signed or {}
    reports: list[ChainReport] = []
    current: ChainCheck | None = None
    for stored in entries:
        key = (stored.entry.topic, stored.entry.partition)
        if current is None or (current.topic, current.partition) != key:
            if current is not None:
                reports.append(current.report())
            current = ChainCheck(*key, signed=signed.get(key))
        current.add(stored)
    if current is not None:
        reports.append(current.report())
    seen = {(r.topic, r.partition) for r in reports}
    reports += [
        ChainCheck(*key, signed=head).report() for key, head in signed.items() if key not in seen
    ]
    return sorted(reports, key=lambda r: (r.topic, r.partition))


# --- who may read what -------------------------------------------------------------------


def actor_names(actor: str) -> tuple[str, ...]:
    """The actors a filter on `actor` means: the actor as events name it
    (`practitioner:dr-lee`), or a subject alone (`dr-lee`) in any role."""
    role, _, subject = actor.partition(":")
    if role in ROLES and subject:
        return (actor,)
    return (actor, *(f"{role}:{actor}" for role in ROLES))


def require_compliance(principal: Principal) -> None:
    if principal.role != "compliance":
        raise PermissionDenied("only compliance staff may do this")


def require_trail_reader(principal: Principal) -> None:
    """Compliance staff search the trail, a patient their own part of it."""
    trail_scope(principal, None)


def trail_scope(principal: Principal, patient: str | None) -> str | None:
    """The patient whose entries `principal` may search (None: every patient)."""
    principal.require_scope("AuditEvent", "s")
    if principal.role == "compliance":
        return patient
    if principal.role == "patient":
        if patient not in (None, principal.patient):
            raise PermissionDenied("a patient may search only their own trail")
        return principal.patient
    raise PermissionDenied("only compliance staff and the patient may read the trail")


def require_disclosure_reader(principal: Principal, patient: str) -> None:
    principal.require_scope("AuditEvent", "r")
    if principal.role != "compliance" and not principal.is_patient(patient):
        raise PermissionDenied("only the patient and compliance staff may read disclosures")


def disclosure_since(now: datetime, since: datetime | None) -> datetime:
    """The start of the accounting: `since`, or six years before `now`."""
    if since is not None:
        return since
    try:
        return now.replace(year=now.year - DISCLOSURE_YEARS)
    except ValueError:  # 29 February
        return now.replace(year=now.year - DISCLOSURE_YEARS, day=28)


def is_disclosure(entry: Entry, patient: str) -> bool:
    """Whether an access entry is an access by someone other than `patient`.

    Records refuses every patient but the chart's own, so a permitted access by a patient
    is the patient's own, whatever their token's subject is called.
    """
    if entry.type not in ACCESS_TYPES or entry.patient != patient:
        return False
    by_the_patient = entry.role == "patient" and (
        entry.outcome == "permit" or entry.actor == f"patient:{patient}"
    )
    return not by_the_patient


# --- break-glass review ---------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    entry_id: str
    patient: str
    decision: str
    note: str | None
    reviewer: str
    reviewed_at: datetime


def review_break_glass(
    entry: Entry, *, decision: str, note: str | None, by: Principal, now: datetime
) -> Review:
    """A compliance officer's decision on a break-glass access."""
    require_compliance(by)
    if entry.break_glass_reason is None or entry.type not in ACCESS_TYPES:
        raise InvalidInput(f"entry {entry.event_id} is not a break-glass access")
    if decision not in REVIEW_DECISIONS:
        raise InvalidInput(f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
    # A later reader of the review must learn why, not only what was decided.
    if note is None or not note.strip():
        raise InvalidInput("a review needs a note saying why")
    return Review(entry.event_id, entry.patient, decision, note.strip(), by.actor, now)


def check_type_filter(name: str | None) -> str | None:
    """The full type name of a `type` filter (short or full form); 422 for an unknown one."""
    if name is None:
        return None
    try:
        return event_type(name).name
    except ValueError:
        raise InvalidInput(f"unknown event type {name!r}") from None
