"""The audit database: the trail's entries, break-glass reviews and signed checkpoints.

Entries are only ever inserted. Nothing here updates or deletes one, and in PostgreSQL a
trigger refuses UPDATE and DELETE on the table, so a bug or a stray script cannot rewrite
history; the one way to start over is `reset_projection` (TRUNCATE, used by a rebuild,
which replays the whole trail from Kafka).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON

from services.audit.domain import (
    ACCESS_TYPES,
    ENTRY_FIELDS,
    ChainedEntry,
    ChainHead,
    Entry,
    Review,
    actor_names,
    format_time,
    link,
    tip,
)
from services.audit.signing import Checkpoint, Verification
from shared.db import UnitOfWork
from shared.inbox import add_inbox_table
from shared.outbox import add_outbox_table
from shared.paging import decode_cursor, encode_cursor
from shared.relay_lease import add_relay_lease_table

metadata = MetaData()
add_outbox_table(metadata)
inbox = add_inbox_table(metadata)
add_relay_lease_table(metadata)

_BigId = BigInteger().with_variant(Integer(), "sqlite")

entries = Table(
    "entries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(120), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", String(20), nullable=True),
    Column("org", Text, nullable=True),
    Column("patient", Text, nullable=False),
    Column("action", String(40), nullable=True),
    Column("outcome", String(20), nullable=True),
    Column("purpose", String(20), nullable=True),
    Column("record_ids", JSON, nullable=False),
    Column("categories", JSON, nullable=False),
    Column("consent_ids", JSON, nullable=False),
    Column("break_glass_reason", Text, nullable=True),
    Column("source", String(40), nullable=False),
    Column("trace_id", String(32), nullable=True),
    Column("topic", String(120), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signature", String(100), nullable=True),
    Column("data_digest", String(64), nullable=True),
    Column("reason", Text, nullable=True),
    Column("break_glass_note", Text, nullable=True),
    UniqueConstraint("topic", "partition", "seq", name="uq_entries_chain_position"),
    Index("ix_entries_patient_id", "patient", "id"),
    Index("ix_entries_actor_id", "actor", "id"),
    Index("ix_entries_type_id", "type", "id"),
)

reviews = Table(
    "reviews",
    metadata,
    # The reviewed entry's event id; no foreign key, so a rebuild can TRUNCATE the entries.
    Column("entry_id", String(64), primary_key=True),
    Column("patient", Text, nullable=False),
    Column("decision", String(20), nullable=False),
    Column("note", Text, nullable=True),
    Column("reviewer", Text, nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # Kept as the exact text that was signed.
    Column("created_at", String(40), nullable=False),
    Column("heads", JSON, nullable=False),
    Column("signature", String(100), nullable=False),
)

verifications = Table(
    "verifications",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # Kept as the exact text that was signed.
    Column("verified_at", String(40), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("chains", Integer, nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("problems", JSON, nullable=False),
    Column("signature", String(100), nullable=False),
)

APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()
"""
for _ddl in (APPEND_ONLY_FUNCTION, APPEND_ONLY_TRIGGER):
    # create_schema (tests) gets the trigger too; the migration creates it for real databases.
    # DDL formats its text with %, so the trigger's own % is doubled.
    event.listen(
        entries, "after_create", DDL(_ddl.replace("%", "%%")).execute_if(dialect="postgresql")
    )

AUDIT_CONSUMER = "audit"


# --- rows and cursors ----------------------------------------------------------------------


def _chained_of(row: Any) -> ChainedEntry:
    entry = Entry(
        event_id=row.event_id,
        type=row.type,
        time=format_time(row.time),
        actor=row.actor,
        role=row.role,
        org=row.org,
        patient=row.patient,
        action=row.action,
        outcome=row.outcome,
        purpose=row.purpose,
        record_ids=tuple(row.record_ids),
        categories=tuple(row.categories),
        consent_ids=tuple(row.consent_ids),
        break_glass_reason=row.break_glass_reason,
        source=row.source,
        trace_id=row.trace_id,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        seq=row.seq,
        signature=row.signature,
        data_digest=row.data_digest,
        reason=row.reason,
        break_glass_note=row.break_glass_note,
    )
    return ChainedEntry(entry, row.prev_hash, row.hash)


_STORED_FIELDS = (*ENTRY_FIELDS, "prev_hash", "hash")


@functools.cache
def _entry_insert(dialect: Dialect) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The INSERT of an entry in `dialect`'s own SQL, and each value's conversion (its
    column type's, as the dialect implements it, so rows are stored as SQLAlchemy stores
    them): rows go to the driver's executemany as tuples, because SQLAlchemy's per-row
    parameter handling cost twice the database's own work (43 vs 15 us a row)."""
    columns = [entries.c[name] for name in _STORED_FIELDS]
    placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(dialect.identifier_preparer.quote(c.name) for c in columns)
    values = ", ".join(placeholder for _ in columns)
    statement = f"INSERT INTO {entries.name} ({names}) VALUES ({values})"
    conversions = tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns)
    return statement, conversions


def _insert_entries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert chained entries (`entry_fields` with `seq`, `prev_hash`, `hash`), one INSERT."""
    connection = session.connection()
    statement, conversions = _entry_insert(connection.dialect)
    connection.exec_driver_sql(
        statement,
        [
            tuple(
                convert(row.get(name)) if convert else row.get(name)
                for name, convert in zip(_STORED_FIELDS, conversions, strict=True)
            )
            for row in rows
        ],
    )


@dataclass(frozen=True)
class Page:
    items: list[ChainedEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class TrailQuery:
    patient: str | None = None
    actor: str | None = None
    type: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    org: str | None = None
    record: str | None = None


@dataclass(frozen=True)
class Tally:
    """How many entries of a day or an organization, and how many were permitted or refused."""

    key: str | None
    total: int
    permit: int
    deny: int


# --- repositories --------------------------------------------------------------------------


_KNOWN_EVENTS = select(entries.c.event_id).where(
    entries.c.event_id.in_(bindparam("ids", expanding=True))
)
_HEAD = (
    select(entries.c.seq, entries.c.hash)
    .where(entries.c.topic == bindparam("topic"), entries.c.partition == bindparam("partition"))
    .order_by(entries.c.seq.desc())
    .limit(1)
)


class Trail:
    """The entries, one hash chain per Kafka topic-partition.

    A rebuild, the only writer while it runs, passes `known_heads` so the head of each chain
    is read from the database once and then followed in memory.
    """

    def __init__(
        self, session: Session, known_heads: dict[tuple[str, int], ChainHead] | None = None
    ) -> None:
        self.session = session
        self._known_heads = known_heads

    def append_all(self, batch: Sequence[dict[str, Any]]) -> list[str]:
        """Chain a batch of entries (`entry_fields`, completed in place into their rows) in
        order, with one query for the events already in and one INSERT; answer the ids of the
        events appended."""
        heads = self._known_heads if self._known_heads is not None else {}
        seen = set(self.session.scalars(_KNOWN_EVENTS, {"ids": [f["event_id"] for f in batch]}))
        tips: dict[tuple[str, int], tuple[int, str]] = {}  # each chain's (seq, hash) so far
        rows = []
        for fields in batch:
            if fields["event_id"] in seen:
                continue
            seen.add(fields["event_id"])
            chain = (fields["topic"], fields["partition"])
            if chain not in tips:
                tips[chain] = tip(heads.get(chain) or self.head(*chain))
            prev_seq, prev_hash = tips[chain]
            digest = link(fields, prev_seq, prev_hash)
            tips[chain] = (fields["seq"], digest)
            fields.update(
                time=datetime.fromisoformat(fields["time"]), prev_hash=prev_hash, hash=digest
            )
            rows.append(fields)
        if rows:
            _insert_entries(self.session, rows)
        heads.update({chain: ChainHead(*chain, *tip) for chain, tip in tips.items()})
        return [row["event_id"] for row in rows]

    def head(self, topic: str, partition: int) -> ChainHead | None:
        if self._known_heads is not None and (topic, partition) in self._known_heads:
            return self._known_heads[(topic, partition)]
        row = self.session.execute(_HEAD, {"topic": topic, "partition": partition}).first()
        return ChainHead(topic, partition, row.seq, row.hash) if row else None

    def heads(self) -> tuple[ChainHead, ...]:
        """Every chain's head, ordered by topic and partition."""
        top = (
            select(entries.c.topic, entries.c.partition, func.max(entries.c.seq).label("seq"))
            .group_by(entries.c.topic, entries.c.partition)
            .subquery()
        )
        rows = self.session.execute(
            select(entries.c.topic, entries.c.partition, entries.c.seq, entries.c.hash)
            .join(
                top,
                and_(
                    entries.c.topic == top.c.topic,
                    entries.c.partition == top.c.partition,
                    entries.c.seq == top.c.seq,
                ),
            )
            .order_by(entries.c.topic, entries.c.partition)
        ).all()
        return tuple(ChainHead(r.topic, r.partition, r.seq, r.hash) for r in rows)

    def get(self, event_id: str) -> ChainedEntry | None:
        row = self.session.execute(select(entries).where(entries.c.event_id == event_id)).first()
        return _chained_of(row) if row else None

    def in_chain_order(self) -> Iterator[ChainedEntry]:
        """Every entry, by topic, partition and seq (streamed)."""
        result = self.session.execute(
            select(entries)
            .order_by(entries.c.topic, entries.c.partition, entries.c.seq)
            .execution_options(yield_per=2000)
        )
        for row in result:
            yield _chained_of(row)

    def search(self, query: TrailQuery, *, limit: int, cursor: str | None) -> Page:
        """Entries matching `query`, newest first, a page at a time."""
        return self._page(_filtered(select(entries), query), limit=limit, cursor=cursor)

    def stream(self, query: TrailQuery) -> Iterator[ChainedEntry]:
        """Every entry matching `query`, newest first, without holding them all."""
        result = self.session.execute(
            _filtered(select(entries), query)
            .order_by(entries.c.id.desc())
            .execution_options(yield_per=1000)
        )
        for row in result:
            yield _chained_of(row)

    def accesses(self, patient: str, *, since: datetime, limit: int, cursor: str | None) -> Page:
        """Access entries of `patient`'s chart since `since`, newest first."""
        return self._page(_accesses(patient, since), limit=limit, cursor=cursor)

    def stream_accesses(self, patient: str, *, since: datetime) -> Iterator[ChainedEntry]:
        """Every access entry of `patient`'s chart since `since`, newest first (streamed)."""
        result = self.session.execute(
            _accesses(patient, since)
            .order_by(entries.c.id.desc())
            .execution_options(yield_per=1000)
        )
        for row in result:
            yield _chained_of(row)

    def tally_by_day(self, query: TrailQuery) -> list[Tally]:
        """Entries matching `query` per UTC day (`YYYY-MM-DD`), oldest first."""
        return self._tally(_day_of(self.session.get_bind().dialect.name), query)

    def tally_by_org(self, query: TrailQuery) -> list[Tally]:
        """Entries matching `query` per organization, the busiest first."""
        tallies = self._tally(entries.c.org, query)
        return sorted(tallies, key=lambda t: (-t.total, t.key or ""))

    def _tally(self, key: Any, query: TrailQuery) -> list[Tally]:
        counted = _filtered(
            select(
                key.label("key"),
                func.count().label("total"),
                func.count(case((entries.c.outcome == "permit", 1))).label("permit"),
                func.count(case((entries.c.outcome == "deny", 1))).label("deny"),
            ),
            query,
        )
        rows = self.session.execute(counted.group_by(key).order_by(key)).all()
        return [
            Tally(None if r.key is None else str(r.key), r.total, r.permit, r.deny) for r in rows
        ]

    def break_glass(self, *, reviewed: bool | None, limit: int, cursor: str | None) -> Page:
        """Break-glass accesses, newest first; only the (un)reviewed ones when asked."""
        statement = select(entries).where(
            entries.c.type.in_(ACCESS_TYPES), entries.c.break_glass_reason.is_not(None)
        )
        if reviewed is not None:
            has_review = (
                select(reviews.c.entry_id).where(reviews.c.entry_id == entries.c.event_id).exists()
            )
            statement = statement.where(has_review if reviewed else ~has_review)
        return self._page(statement, limit=limit, cursor=cursor)

    def _page(self, statement: Select[Any], *, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor, int)
        if after is not None:
            statement = statement.where(entries.c.id < after)
        rows = self.session.execute(statement.order_by(entries.c.id.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([_chained_of(r) for r in rows], encode_cursor(rows[-1].id) if more else None)


def _accesses(patient: str, since: datetime) -> Select[Any]:
    return select(entries).where(
        entries.c.patient == patient,
        entries.c.type.in_(ACCESS_TYPES),
        entries.c.time >= since,
    )


def _day_of(dialect: str) -> Any:
    # Entries are stored in UTC; SQLite keeps them as text, PostgreSQL as timestamptz.
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", entries.c.time), "YYYY-MM-DD", type_=String)
    return func.substr(entries.c.time, 1, 10, type_=String)


def _names_record(record: str) -> Any:
    # `record_ids` is a JSON list: its text holds the id JSON-quoted, which no other id's
    # quoted form contains. LIKE's own wildcards in the id are escaped.
    quoted = json.dumps(record).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(entries.c.record_ids, Text).like(f"%{quoted}%", escape="\\")


def _filtered(statement: Select[Any], query: TrailQuery) -> Select[Any]:
    conditions = []
    if query.patient is not None:
        conditions.append(entries.c.patient == query.patient)
    if query.actor is not None:
        # Equality, not a LIKE on the subject: it walks the (actor, id) index newest first.
        names = actor_names(query.actor)
        conditions.append(
            entries.c.actor == names[0] if len(names) == 1 else entries.c.actor.in_(names)
        )
    if query.type is not None:
        conditions.append(entries.c.type == query.type)
    if query.outcome is not None:
        conditions.append(entries.c.outcome == query.outcome)
    if query.since is not None:
        conditions.append(entries.c.time >= query.since)
    if query.until is not None:
        conditions.append(entries.c.time < query.until)
    if query.org is not None:
        conditions.append(entries.c.org == query.org)
    if query.record is not None:
        conditions.append(_names_record(query.record))
    return statement.where(*conditions)


class Reviews:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, review: Review) -> None:
        self.session.execute(
            insert(reviews).values(
                entry_id=review.entry_id,
                patient=review.patient,
                decision=review.decision,
                note=review.note,
                reviewer=review.reviewer,
                reviewed_at=review.reviewed_at,
            )
        )

    def get(self, entry_id: str) -> Review | None:
        row = self.session.execute(select(reviews).where(reviews.c.entry_id == entry_id)).first()
        if row is None:
            return None
        return Review(
            row.entry_id, row.patient, row.decision, row.note, row.reviewer, row.reviewed_at
        )

    def of(self, entry_ids: Sequence[str]) -> dict[str, Review]:
        rows = self.session.execute(select(reviews).where(reviews.c.entry_id.in_(entry_ids)))
        return {
            r.entry_id: Review(r.entry_id, r.patient, r.decision, r.note, r.reviewer, r.reviewed_at)
            for r in rows
        }


class Checkpoints:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, checkpoint: Checkpoint) -> None:
        self.session.execute(
            insert(checkpoints).values(
                created_at=checkpoint.created_at,
                heads=[h.as_dict() for h in checkpoint.heads],
                signature=checkpoint.signature,
            )
        )

    def latest(self) -> Checkpoint | None:
        row = self.session.execute(
            select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)
        ).first()
        return _checkpoint_of(row) if row else None

    def all(self) -> Iterator[Checkpoint]:
        for row in self.session.execute(select(checkpoints).order_by(checkpoints.c.id)):
            yield _checkpoint_of(row)


class Verifications:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, verification: Verification) -> None:
        self.session.execute(
            insert(verifications).values(
                verified_at=verification.verified_at,
                ok=verification.ok,
                chains=verification.chains,
                entries=verification.entries,
                problems=list(verification.problems),
                signature=verification.signature,
            )
        )

    def recent(self, limit: int) -> list[Verification]:
        """The last `limit` verifications, newest first."""
        rows = self.session.execute(
            select(verifications).order_by(verifications.c.id.desc()).limit(limit)
        )
        return [
            Verification(r.verified_at, r.ok, r.chains, r.entries, tuple(r.problems), r.signature)
            for r in rows
        ]


def _checkpoint_of(row: Any) -> Checkpoint:
    return Checkpoint(row.created_at, tuple(ChainHead(**h) for h in row.heads), row.signature)


def reset_projection(session: Session) -> None:
    """Empty the trail and the inbox, for a rebuild from Kafka.

    TRUNCATE, not DELETE: the append-only trigger refuses row deletes, and a rebuild is the
    one sanctioned way to start the projection over. Reviews and checkpoints stay: reviews
    are audit's own state, and old checkpoints let the rebuilt chains be checked.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("TRUNCATE entries"))
    else:
        session.execute(delete(entries))
    session.execute(delete(inbox))


class AuditUnitOfWork(UnitOfWork):
    trail: Trail
    reviews: Reviews
    checkpoints: Checkpoints
    verifications: Verifications

    def _open(self, session: Session) -> None:
        self.trail = Trail(session)
        self.reviews = Reviews(session)
        self.checkpoints = Checkpoints(session)
        self.verifications = Verifications(session)
