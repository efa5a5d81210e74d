"""Tables of the chart, its repositories, and the unit of work that writes state and events
(outbox) in one transaction.

A chart row holds the patient's wrapped data key until erasure, then only the fact of the
erasure. Record content is stored sealed per version; codes only as keyed digests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.records.domain import Record
from services.records.sealing import Sealed
from shared.consent_rules import ConsentTerms
from shared.db import UnitOfWork
from shared.inbox import add_inbox_table
from shared.outbox import add_outbox_table
from shared.relay_lease import add_relay_lease_table

metadata = MetaData()
add_outbox_table(metadata)
add_inbox_table(metadata)
add_relay_lease_table(metadata)

PATIENT = String(200)
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

charts = Table(
    "charts",
    metadata,
    Column("patient", PATIENT, primary_key=True),
    Column("key_id", String(36), nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),  # NULL once erased: the shredding
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=True),
    Column("erased_by", String(250), nullable=True),
)

records = Table(
    "records",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("patient", PATIENT, nullable=False),
    Column("category", String(40), nullable=False),
    Column("source", String(3), nullable=False),
    Column("author", String(250), nullable=False),
    Column("author_org", String(200), nullable=True),
    Column("security", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_records_patient_seq", "patient", "seq"),
)

record_versions = Table(
    "record_versions",
    metadata,
    Column("record_id", String(36), ForeignKey("records.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("security", JSON, nullable=False),
    Column("key_id", String(36), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(250), nullable=False),
)

# The current version's codes, as HMAC digests under the patient's data key.
record_codes = Table(
    "record_codes",
    metadata,
    Column("record_id", String(36), ForeignKey("records.id"), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Index("ix_record_codes_digest", "digest"),
)

# The local projection of caretrail.consent.v1 that reads are enforced against.
consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(64), primary_key=True),
    Column("patient", PATIENT, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("grantee_type", String(20), nullable=False),
    Column("grantee_id", String(200), nullable=False),
    Column("actions", JSON, nullable=False),
    Column("categories", JSON, nullable=False),
    Column("security_labels", JSON, nullable=False),
    Column("purposes", JSON, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Index("ix_consents_patient_grantee", "patient", "grantee_id"),
)


# The version of everything reads are enforced against: bumped in the transaction of every
# change to the consent projection and of every erasure. Web processes cache consents and
# unwrapped chart keys for one value of it (shared.fresh_cache). One row, id 1, once bumped.
enforcement_version = Table(
    "enforcement_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# A session or a bare connection: reads run on a connection, writes in a unit of work.
Executor = Session | Connection


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything the service stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ChartKey:
    """A chart's row: its wrapped data key, unless the chart was erased."""

    patient: str
    key_id: str | None
    wrapped_key: bytes | None
    erased: bool


def _upsert(executor: Executor) -> Any:
    """The dialect's INSERT that takes ON CONFLICT clauses."""
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return pg_insert if bind.dialect.name == "postgresql" else sqlite_insert


def bump_enforcement_version(executor: Executor) -> None:
    """Tell every process's cache that what reads are enforced against has changed."""
    stmt = _upsert(executor)(enforcement_version).values(id=1, version=1)
    executor.execute(
        stmt.on_conflict_do_update(
            index_elements=["id"], set_={"version": enforcement_version.c.version + 1}
        )
    )


class Charts:
    def __init__(self, session: Executor) -> None:
        self._session = session

    def get(self, *, patient: str) -> ChartKey | None:
        row = self._session.execute(_CHART_KEY, {"patient": patient}).first()
        if row is None:
            return None
        return ChartKey(patient, row.key_id, row.wrapped_key, row.erased_at is not None)

    def open_chart(self, *, patient: str, key_id: str, wrapped_key: bytes, at: datetime) -> None:
        """Add the chart with this key, unless a concurrent first write just added it."""
        stmt = _upsert(self._session)(charts).values(
            patient=patient, key_id=key_id, wrapped_key=wrapped_key, created_at=at
        )
        self._session.execute(stmt.on_conflict_do_nothing(index_elements=["patient"]))

    def erase(self, *, patient: str, by: str, at: datetime) -> None:
        """Destroy the data key and what was derived from it; keep the fact of the erasure."""
        erased = {"key_id": None, "wrapped_key": None, "erased_at": at, "erased_by": by}
        if self.get(patient=patient) is None:
            self._session.execute(insert(charts).values(patient=patient, created_at=at, **erased))
        else:
            self._session.execute(
                update(charts).where(charts.c.patient == patient).values(**erased)
            )
        of_patient = select(records.c.id).where(records.c.patient == patient)
        self._session.execute(delete(record_codes).where(record_codes.c.record_id.in_(of_patient)))
        self._session.execute(delete(consents).where(consents.c.patient == patient))
        bump_enforcement_version(self._session)


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    record: Record
    content: Sealed


@dataclass(frozen=True)
class StoredVersion:
    version: int
    security: frozenset[str]
    changed_at: datetime
    content: Sealed


_RECORD_COLUMNS = (
    records.c.seq,
    records.c.id,
    records.c.patient,
    records.c.category,
    records.c.source,
    records.c.author,
    records.c.author_org,
    records.c.security,
    records.c.version,
    records.c.status,
    records.c.created_at,
    records.c.updated_at,
    record_versions.c.key_id,
    record_versions.c.nonce,
    record_versions.c.ciphertext,
)


def _current() -> Any:
    return select(*_RECORD_COLUMNS).join(
        record_versions,
        (record_versions.c.record_id == records.c.id)
        & (record_versions.c.version == records.c.version),
    )


# The statements of every read, built once: SQLAlchemy memoizes a statement's cache key, and
# building them per call cost a read more than running them (bench/profile_read.py, issue 8).
_CHART_KEY = select(charts.c.key_id, charts.c.wrapped_key, charts.c.erased_at).where(
    charts.c.patient == bindparam("patient")
)
_ENFORCEMENT_VERSION = func.coalesce(
    select(enforcement_version.c.version).where(enforcement_version.c.id == 1).scalar_subquery(),
    0,
)
# A read by id learns the enforcement version in the same statement (and so snapshot) as the
# record: one round trip, and the cached consents and key it then uses are those of its snapshot.
_RECORD = (
    _current()
    .add_columns(_ENFORCEMENT_VERSION.label("enforcement_version"))
    .where(records.c.id == bindparam("record_id"), records.c.patient == bindparam("patient"))
)
_VERSION = select(_ENFORCEMENT_VERSION)
_BY_PRACTITIONER = (consents.c.grantee_type == "practitioner") & (
    consents.c.grantee_id == bindparam("practitioner")
)
_CONSENTS_OF_PRACTITIONER = select(consents).where(
    consents.c.patient == bindparam("patient"), _BY_PRACTITIONER
)
_CONSENTS_OF_PRACTITIONER_OR_ORG = select(consents).where(
    consents.c.patient == bindparam("patient"),
    or_(
        _BY_PRACTITIONER,
        (consents.c.grantee_type == "organization") & (consents.c.grantee_id == bindparam("org")),
    ),
)


# The statements of every write, built once, for the same reason.
_ADD_RECORD = insert(records)
_ADD_VERSION = insert(record_versions)
_ADD_CODE = insert(record_codes)
_BY_RECORD_ID = records.c.id == bindparam("record_id")
_SET_VERSION = update(records).where(_BY_RECORD_ID)
_SET_STATUS = update(records).where(_BY_RECORD_ID)
_FORGET_CODES = delete(record_codes).where(record_codes.c.record_id == bindparam("record_id"))


def _stored(row: Row[Any]) -> StoredRecord:
    record = Record(
        id=row.id,
        patient=row.patient,
        category=row.category,
        source=row.source,
        author=row.author,
        author_org=row.author_org,
        security=frozenset(row.security),
        version=row.version,
        status=row.status,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )
    return StoredRecord(row.seq, record, Sealed(row.key_id, row.nonce, row.ciphertext))


@functools.cache
def _search_statement(*given: bool) -> Any:
    """The search for one combination of filters given, built once: building it per call
    cost a chart listing more than running it."""
    _patient, category, since, before_seq, digest, _limit = given
    query = _current().where(
        records.c.patient == bindparam("patient"), records.c.status == "current"
    )
    if category:
        query = query.where(records.c.category == bindparam("category"))
    if since:
        query = query.where(
            records.c.updated_at >= bindparam("since", type_=DateTime(timezone=True))
        )
    if before_seq:
        query = query.where(records.c.seq < bindparam("before_seq"))
    if digest:
        coded = select(record_codes.c.record_id).where(record_codes.c.digest == bindparam("digest"))
        query = query.where(records.c.id.in_(coded))
    return query.order_by(records.c.seq.desc()).limit(bindparam("limit"))


@dataclass(frozen=True)
class Search:
    """Which current records of a chart to list, newest first, after a position."""

    patient: str
    category: str | None = None
    code_digest: str | None = None
    since: datetime | None = None
    before_seq: int | None = None


class Records:
    def __init__(self, session: Executor) -> None:
        self._session = session

    def add(self, record: Record, content: Sealed, digests: Iterable[str]) -> None:
        self._session.execute(
            _ADD_RECORD,
            {
                "id": record.id,
                "patient": record.patient,
                "category": record.category,
                "source": record.source,
                "author": record.author,
                "author_org": record.author_org,
                "security": sorted(record.security),
                "version": record.version,
                "status": record.status,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
            },
        )
        self._add_version(record, content)
        self._index_codes(record.id, digests)

    def add_version(self, record: Record, content: Sealed, digests: Iterable[str]) -> None:
        self._session.execute(
            _SET_VERSION,
            {
                "record_id": record.id,
                "security": sorted(record.security),
                "version": record.version,
                "updated_at": record.updated_at,
            },
        )
        self._add_version(record, content)
        self._session.execute(_FORGET_CODES, {"record_id": record.id})
        self._index_codes(record.id, digests)

    def set_status(self, record: Record) -> None:
        self._session.execute(
            _SET_STATUS,
            {"record_id": record.id, "status": record.status, "updated_at": record.updated_at},
        )

    def _add_version(self, record: Record, content: Sealed) -> None:
        self._session.execute(
            _ADD_VERSION,
            {
                "record_id": record.id,
                "version": record.version,
                "security": sorted(record.security),
                "key_id": content.key_id,
                "nonce": content.nonce,
                "ciphertext": content.ciphertext,
                "changed_at": record.updated_at,
                "changed_by": record.author,
            },
        )

    def _index_codes(self, record_id: str, digests: Iterable[str]) -> None:
        rows = [{"record_id": record_id, "digest": d} for d in sorted(set(digests))]
        if rows:
            self._session.execute(_ADD_CODE, rows)

    def get(self, *, patient: str, record_id: str) -> StoredRecord | None:
        return self.get_with_version(patient=patient, record_id=record_id)[0]

    def get_with_version(self, *, patient: str, record_id: str) -> tuple[StoredRecord | None, int]:
        """The record (current version) and the enforcement version of the same snapshot."""
        row = self._session.execute(_RECORD, {"record_id": record_id, "patient": patient}).first()
        if row is None:
            return None, self.enforcement_version()
        return _stored(row), row.enforcement_version

    def enforcement_version(self) -> int:
        return int(self._session.execute(_VERSION).scalar_one())

    def search(self, search: Search, *, limit: int) -> list[StoredRecord]:
        """Current records (not entered in error) matching `search`, newest first."""
        params = {
            "patient": search.patient,
            "category": search.category,
            "since": search.since,
            "before_seq": search.before_seq,
            "digest": search.code_digest,
            "limit": limit,
        }
        rows = self._session.execute(
            _search_statement(*(v is not None for v in params.values())), params
        )
        return [_stored(row) for row in rows]

    def versions(
        self, *, record_id: str, before: int | None = None, limit: int = 1000
    ) -> list[StoredVersion]:
        """Versions of a record, newest first."""
        query = select(record_versions).where(record_versions.c.record_id == record_id)
        if before is not None:
            query = query.where(record_versions.c.version < before)
        rows = self._session.execute(
            query.order_by(record_versions.c.version.desc()).limit(limit)
        ).all()
        return [
            StoredVersion(
                row.version,
                frozenset(row.security),
                _utc(row.changed_at),
                Sealed(row.key_id, row.nonce, row.ciphertext),
            )
            for row in rows
        ]


class Consents:
    """The local projection of consents, as the consent rule needs them."""

    def __init__(self, session: Executor) -> None:
        self._session = session

    def for_grantee(
        self, *, patient: str, practitioner: str, org: str | None
    ) -> Sequence[ConsentTerms]:
        if org is None:
            query, params = _CONSENTS_OF_PRACTITIONER, {"practitioner": practitioner}
        else:
            query, params = (
                _CONSENTS_OF_PRACTITIONER_OR_ORG,
                {"practitioner": practitioner, "org": org},
            )
        rows = self._session.execute(query, {"patient": patient, **params}).all()
        return [
            ConsentTerms(
                id=row.consent_id,
                patient=row.patient,
                grantee_type=row.grantee_type,
                grantee_id=row.grantee_id,
                actions=frozenset(row.actions),
                categories=frozenset(row.categories),
                security_labels=frozenset(row.security_labels),
                purposes=frozenset(row.purposes),
                start=_utc(row.period_start),
                end=_utc(row.period_end),
                status=row.status,
            )
            for row in rows
        ]

    def _version(self, consent_id: str) -> int | None:
        return self._session.execute(
            select(consents.c.version).where(consents.c.consent_id == consent_id)
        ).scalar_one_or_none()

    def grant(self, terms: ConsentTerms, *, version: int) -> None:
        """Project a granted consent, unless a later version of it is already known."""
        values = {
            "patient": terms.patient,
            "version": version,
            "status": "active",
            "grantee_type": terms.grantee_type,
            "grantee_id": terms.grantee_id,
            "actions": sorted(terms.actions),
            "categories": sorted(terms.categories),
            "security_labels": sorted(terms.security_labels),
            "purposes": sorted(terms.purposes),
            "period_start": terms.start,
            "period_end": terms.end,
        }
        known = self._version(terms.id)
        if known is None:
            self._session.execute(insert(consents).values(consent_id=terms.id, **values))
        elif known < version:
            self._session.execute(
                update(consents).where(consents.c.consent_id == terms.id).values(**values)
            )
        else:
            return
        bump_enforcement_version(self._session)

    def end(self, *, consent_id: str, status: str, version: int) -> bool:
        """Mark a consent revoked or expired; answer whether the projection knew it."""
        result = self._session.execute(
            update(consents)
            .where(consents.c.consent_id == consent_id, consents.c.version <= version)
            .values(status=status, version=version)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        bump_enforcement_version(self._session)
        return True


class ChartReading:
    """The repositories over one read-only connection: a read request's snapshot."""

    def __init__(self, connection: Connection) -> None:
        self.charts = Charts(connection)
        self.records = Records(connection)
        self.consents = Consents(connection)


class ChartUnitOfWork(UnitOfWork):
    charts: Charts
    records: Records
    consents: Consents

    def _open(self, session: Session) -> None:
        self.charts = Charts(session)
        self.records = Records(session)
        self.consents = Consents(session)
