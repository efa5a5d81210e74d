"""The chart's use cases.

Writes are each a transaction of the unit of work, their event in its outbox. Reads emit one
access fact and answer only once it is committed, refusals included: `_refuse` commits the
`access.denied` fact, then raises the error the caller sees. Only requests refused before
reaching the chart (no valid token, malformed input) emit nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Engine

from services.records.domain import (
    Access,
    Reader,
    Record,
    Verdict,
    access_event,
    chart_refusal,
    may_erase,
    needs_consent,
    new_record,
    patient_erased,
    record_changed,
    record_entered_in_error,
    require_scope,
    scope_allows,
    verdict,
)
from services.records.resources import ClinicalResource, validate_resource
from services.records.sealing import DataKey, KeyRing, Sealed, record_context
from services.records.store import ChartKey, ChartReading, ChartUnitOfWork, Search, StoredRecord
from shared.auth import Principal
from shared.consent_rules import ConsentTerms
from shared.db import Reading
from shared.errors import DomainError, Gone, NotFound, PermissionDenied
from shared.fact_writer import FactWriter
from shared.fresh_cache import VersionedCache
from shared.paging import decode_cursor, encode_cursor

MAX_LIMIT = 100
T = TypeVar("T")


@dataclass(frozen=True)
class RecordView:
    """A record as answered: its metadata and its FHIR resource."""

    id: str
    version: int
    status: str
    source: str
    author: str
    author_org: str | None
    category: str
    security: list[str]
    created_at: datetime
    updated_at: datetime
    content: bytes  # the FHIR resource's JSON, as it was sealed

    @property
    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = json.loads(self.content)
        return resource

    @classmethod
    def of(cls, record: Record, content: bytes) -> RecordView:
        return cls(
            record.id,
            record.version,
            record.status,
            record.source,
            record.author,
            record.author_org,
            record.category,
            sorted(record.security),
            record.created_at,
            record.updated_at,
            content,
        )


@dataclass(frozen=True)
class Page:
    items: list[RecordView]
    next_cursor: str | None


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    code: str | None = None
    since: datetime | None = None
    limit: int = 20
    cursor: str | None = None


@dataclass
class Visible:
    """What a scan of the chart found: records shown, verdicts of those withheld."""

    shown: list[tuple[StoredRecord, Verdict]] = field(default_factory=list)
    withheld: list[Verdict] = field(default_factory=list)
    more: bool = False

    def access(self, action: str) -> Access:
        return Access.of(action, [(s.record, v) for s, v in self.shown], self.withheld)


@dataclass
class _Consents:
    """The reader's consents for this chart, loaded at most once, and only if needed."""

    load: Callable[[], Sequence[ConsentTerms]]
    _loaded: Sequence[ConsentTerms] | None = field(default=None)

    def for_record(self, reader: Reader, record: Record) -> Sequence[ConsentTerms]:
        if not needs_consent(reader, record):
            return ()
        if self._loaded is None:
            self._loaded = self.load()
        return self._loaded


@dataclass(frozen=True)
class _ChartState:
    """What reads need of a chart's row: whether it was erased, else its data key."""

    erased: bool
    key: DataKey | None


class Chart:
    """Writes to and reads from patients' charts.

    Writes run in a unit of work. Reads run on a read-only connection, with the consents and
    chart keys of the enforcement version their snapshot saw (cached per process, see
    `shared.fresh_cache`), and hand their access fact to the group-committing `facts` writer:
    a read answers once its fact is committed.
    """

    def __init__(
        self,
        unit_of_work: Callable[[], ChartUnitOfWork],
        keyring: KeyRing,
        *,
        engine: Engine,
        facts: FactWriter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._uow = unit_of_work
        self._keyring = keyring
        self._connections = Reading(engine)
        self._facts = facts
        self._clock = clock
        self._consents_cache: VersionedCache[Sequence[ConsentTerms]] = VersionedCache()
        self._keys_cache: VersionedCache[_ChartState | None] = VersionedCache()

    # --- writes -----------------------------------------------------------------------

    def add(self, principal: Principal, patient: str, body: Any) -> RecordView:
        """Add a FHIR resource to the chart as its first version."""
        resource = validate_resource(body, patient)
        now = self._clock()
        record = new_record(
            principal,
            patient=patient,
            category=resource.category,
            security=resource.security,
            at=now,
        )
        require_scope(principal, resource.category, "c")
        with self._uow() as uow:
            key = self._writing_key(uow, patient, now)
            content, sealed = self._seal(key, record, resource)
            uow.records.add(record, sealed, (key.digest(c) for c in resource.codes))
            uow.publish(
                record_changed("record.created", record, sealed.to_event_data(), principal.actor)
            )
            uow.commit()
        return RecordView.of(record, content)

    def amend(
        self,
        principal: Principal,
        patient: str,
        record_id: str,
        body: Any,
        expected_version: int | None = None,
    ) -> RecordView:
        """Write a new version of a record, by its author."""
        resource = validate_resource(body, patient)
        now = self._clock()
        with self._uow() as uow:
            key = self._key(uow, patient)
            found = uow.records.get(patient=patient, record_id=record_id)
            if found is None or key is None:
                raise NotFound(f"no record {record_id} in this chart")
            record = found.record.amended(
                by=principal,
                category=resource.category,
                security=resource.security,
                at=now,
                expected_version=expected_version,
            )
            require_scope(principal, record.category, "u")
            content, sealed = self._seal(key, record, resource)
            uow.records.add_version(record, sealed, (key.digest(c) for c in resource.codes))
            uow.publish(
                record_changed("record.amended", record, sealed.to_event_data(), principal.actor)
            )
            uow.commit()
        return RecordView.of(record, content)

    def mark_entered_in_error(
        self, principal: Principal, patient: str, record_id: str
    ) -> RecordView:
        """Mark a record as entered in error, by its author; it stays in the chart, marked."""
        with self._uow() as uow:
            key = self._key(uow, patient)
            found = uow.records.get(patient=patient, record_id=record_id)
            if found is None or key is None:
                raise NotFound(f"no record {record_id} in this chart")
            record = found.record.entered_in_error(by=principal, at=self._clock())
            require_scope(principal, record.category, "u")
            uow.records.set_status(record)
            uow.publish(record_entered_in_error(record, principal.actor))
            uow.commit()
            return RecordView.of(record, self._open(key, found.record, found.content))

    def erase(self, principal: Principal, patient: str) -> None:
        """Shred the chart: destroy its data key, so its content never opens again."""
        may_erase(principal, patient)
        with self._uow() as uow:
            chart = uow.charts.get(patient=patient)
            if chart is not None and chart.erased:
                raise Gone("this chart was erased")
            uow.charts.erase(patient=patient, by=principal.actor, at=self._clock())
            uow.publish(patient_erased(patient, principal.actor))
            uow.commit()
        self._keyring.forget(patient)

    # --- reads ------------------------------------------------------------------------

    def read(self, reader: Reader, patient: str, record_id: str) -> RecordView:
        """One record, if the reader may see it."""
        self._refuse_chart(reader, patient, "read", [record_id])
        with self._reading() as reading:
            found, version = reading.records.get_with_version(patient=patient, record_id=record_id)
            key = self._reading_key(reading, version, reader, patient, "read", [record_id])
            if found is not None and key is not None:
                allowed = self._verdict(reading, version, reader, found.record)
        if found is None or key is None:
            missing = NotFound(f"no record {record_id} in this chart")
            self._refuse(reader, patient, "read", missing, [record_id])
        record = found.record
        if not allowed.permit:
            self._refuse(reader, patient, "read", _denied(allowed), [record_id])
        view = RecordView.of(record, self._open(key, record, found.content))
        self._permit(reader, patient, Access.of("read", [(record, allowed)], []))
        return view

    def search(self, reader: Reader, patient: str, filters: Filters) -> Page:
        """The current records the reader may see, newest first, a page at a time."""
        before = decode_cursor(filters.cursor, int)
        limit = max(1, min(filters.limit, MAX_LIMIT))
        self._refuse_chart(reader, patient, "search")
        if filters.category and not scope_allows(reader.principal, filters.category, "s"):
            refusal = f"the token's scopes do not allow searching {filters.category}"
            self._refuse(reader, patient, "search", PermissionDenied(refusal))
        with self._reading() as reading:
            version = reading.records.enforcement_version()
            key = self._reading_key(reading, version, reader, patient, "search")
            if key is not None:
                digest = key.digest(filters.code) if filters.code else None
                search = Search(patient, filters.category, digest, filters.since, before)
                found = self._visible(reading, version, reader, search, limit, "s")
        if key is None:
            self._permit(reader, patient, Access("search", True))
            return Page([], None)
        items = [
            RecordView.of(s.record, self._open(key, s.record, s.content)) for s, _ in found.shown
        ]
        self._permit(reader, patient, found.access("search"))
        next_cursor = encode_cursor(found.shown[-1][0].seq) if found.more else None
        return Page(items, next_cursor)

    def versions(
        self,
        reader: Reader,
        patient: str,
        record_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        version: int | None = None,
    ) -> Page:
        """The versions of a record (or just one), newest first, if the reader may see them."""
        before = decode_cursor(cursor, int) if version is None else version + 1
        limit = 1 if version is not None else max(1, min(limit, MAX_LIMIT))
        self._refuse_chart(reader, patient, "vread", [record_id])
        with self._reading() as reading:
            found, enforced = reading.records.get_with_version(patient=patient, record_id=record_id)
            key = self._reading_key(reading, enforced, reader, patient, "vread", [record_id])
            stored = (
                reading.records.versions(record_id=record_id, before=before, limit=limit + 1)
                if found and key
                else []
            )
            more, stored = len(stored) > limit, stored[:limit]
            if version is not None:
                stored = [v for v in stored if v.version == version]
            if found is not None and stored:
                # Old versions are shown only to a reader who may see every label they carry,
                # and the current one's: a label added later usually applies to what came before.
                labels = found.record.security.union(*(v.security for v in stored))
                record = replace(found.record, security=labels)
                allowed = self._verdict(reading, enforced, reader, record)
        if found is None or key is None or not stored:
            missing = NotFound(f"no such version of record {record_id}")
            self._refuse(reader, patient, "vread", missing, [record_id])
        if not allowed.permit:
            self._refuse(reader, patient, "vread", _denied(allowed), [record_id])
        views = []
        for v in stored:
            at_version = replace(
                found.record, version=v.version, security=v.security, updated_at=v.changed_at
            )
            views.append(RecordView.of(at_version, self._open(key, at_version, v.content)))
        self._permit(reader, patient, Access.of("vread", [(record, allowed)], []))
        return Page(views, encode_cursor(stored[-1].version) if more else None)

    def export(self, reader: Reader, patient: str) -> dict[str, Any]:
        """The chart as a FHIR Bundle (searchset) of what the reader may see."""
        self._refuse_chart(reader, patient, "export")
        with self._reading() as reading:
            version = reading.records.enforcement_version()
            key = self._reading_key(reading, version, reader, patient, "export")
            found = (
                self._visible(reading, version, reader, Search(patient), None, "r")
                if key
                else Visible()
            )
        resources = [self._open(key, s.record, s.content) for s, _ in found.shown if key]
        self._permit(reader, patient, found.access("export"))
        return _bundle([json.loads(r) for r in resources], self._clock())

    def derive(
        self,
        reader: Reader,
        patient: str,
        categories: Sequence[str],
        derive: Callable[[list[RecordView]], tuple[T, Sequence[str]]],
    ) -> T:
        """What `derive` makes of the current records of `categories` the reader may see
        (reminders, a trend): one access fact names the records it answers it used. Refused
        when the reader may see none of the records there are, as an export is."""
        self._refuse_chart(reader, patient, "search")
        with self._reading() as reading:
            version = reading.records.enforcement_version()
            key = self._reading_key(reading, version, reader, patient, "search")
            found = Visible()
            for category in categories if key is not None else ():
                part = self._visible(reading, version, reader, Search(patient, category), None, "s")
                found.shown.extend(part.shown)
                found.withheld.extend(part.withheld)
        if found.withheld and not found.shown:
            self._refuse(reader, patient, "search", _denied(found.withheld[0]))
        views = [
            RecordView.of(s.record, self._open(key, s.record, s.content))
            for s, _ in found.shown
            if key is not None
        ]
        value, used = derive(views)
        used_ids = set(used)
        shown = [(s.record, v) for s, v in found.shown if s.record.id in used_ids]
        self._permit(reader, patient, Access.of("search", shown, []))
        return value

    # --- the parts --------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[ChartReading]:
        with self._connections() as connection:
            yield ChartReading(connection)

    def _visible(
        self,
        reading: ChartReading,
        version: int,
        reader: Reader,
        search: Search,
        limit: int | None,
        permission: str,
    ) -> Visible:
        """Scan matching records newest first, keeping up to `limit` the reader may see."""
        consents = _Consents(lambda: self._consents(reading, version, reader, search.patient))
        found = Visible()
        # A page and a half: room for some withheld records without a second query, and not
        # so many rows that building the unused ones costs more than a query.
        batch_size = 200 if limit is None else limit + 1 + limit // 2
        now = self._clock()
        # Within one scan a verdict depends only on what these say of a record.
        verdicts: dict[tuple[str, frozenset[str], str | None], Verdict] = {}
        while True:
            batch = reading.records.search(search, limit=batch_size)
            for stored in batch:
                record = stored.record
                alike = (record.category, record.security, record.author_org)
                allowed = verdicts.get(alike)
                if allowed is None:
                    consented = consents.for_record(reader, record)
                    allowed = verdict(reader, record, consented, at=now, permission=permission)
                    verdicts[alike] = allowed
                if not allowed.permit:
                    found.withheld.append(allowed)
                elif limit is not None and len(found.shown) == limit:
                    found.more = True
                    return found
                else:
                    found.shown.append((stored, allowed))
            if len(batch) < batch_size:
                return found
            search = replace(search, before_seq=batch[-1].seq)

    def _verdict(
        self, reading: ChartReading, version: int, reader: Reader, record: Record
    ) -> Verdict:
        consents = _Consents(lambda: self._consents(reading, version, reader, record.patient))
        return verdict(reader, record, consents.for_record(reader, record), at=self._clock())

    def _consents(
        self, reading: ChartReading, version: int, reader: Reader, patient: str
    ) -> Sequence[ConsentTerms]:
        """The reader's consents for this chart, as of `version` (cached per process)."""
        principal = reader.principal
        return self._consents_cache.get(
            version,
            (patient, principal.sub, principal.org),
            lambda: tuple(
                reading.consents.for_grantee(
                    patient=patient, practitioner=principal.sub, org=principal.org
                )
            ),
        )

    def _refuse_chart(
        self, reader: Reader, patient: str, action: str, record_ids: Sequence[str] = ()
    ) -> None:
        """Refuse a reader who may read nothing of this chart, whatever it holds."""
        refusal = chart_refusal(reader, patient)
        if refusal is not None:
            self._refuse(reader, patient, action, PermissionDenied(refusal), record_ids)

    def _reading_key(
        self,
        reading: ChartReading,
        version: int,
        reader: Reader,
        patient: str,
        action: str,
        record_ids: Sequence[str] = (),
    ) -> DataKey | None:
        """The chart's data key as of `version` (None for a chart never written); an erased
        chart is refused."""
        state = self._keys_cache.get(version, patient, lambda: self._chart_state(reading, patient))
        if state is not None and state.erased:
            self._refuse(reader, patient, action, Gone("this chart was erased"), record_ids)
        return state.key if state is not None else None

    def _chart_state(self, reading: ChartReading, patient: str) -> _ChartState | None:
        chart = reading.charts.get(patient=patient)
        if chart is None:
            return None  # not cached: a first write opens a chart without a version bump
        return _ChartState(chart.erased, self._unwrap(chart))

    def _key(self, uow: ChartUnitOfWork, patient: str) -> DataKey | None:
        chart = uow.charts.get(patient=patient)
        if chart is not None and chart.erased:
            raise Gone("this chart was erased")
        return self._unwrap(chart)

    def _writing_key(self, uow: ChartUnitOfWork, patient: str, now: datetime) -> DataKey:
        key = self._key(uow, patient)
        if key is not None:
            return key
        fresh, wrapped = self._keyring.new_key(patient)
        uow.charts.open_chart(patient=patient, key_id=fresh.id, wrapped_key=wrapped, at=now)
        # A concurrent first write may have won: use whichever key the chart now holds.
        key = self._key(uow, patient)
        if key is None:
            raise Gone("this chart was erased")
        return key

    def _unwrap(self, chart: ChartKey | None) -> DataKey | None:
        if chart is None or chart.key_id is None or chart.wrapped_key is None:
            return None
        return self._keyring.unwrap(chart.patient, chart.key_id, chart.wrapped_key)

    def _seal(
        self, key: DataKey, record: Record, resource: ClinicalResource
    ) -> tuple[bytes, Sealed]:
        stored = resource.with_identity(
            record.id, record.version, record.updated_at.isoformat().replace("+00:00", "Z")
        )
        context = record_context(record.patient, record.id, record.version)
        content = json.dumps(stored, separators=(",", ":")).encode()
        return content, key.seal(content, context)

    def _open(self, key: DataKey, record: Record, sealed: Sealed) -> bytes:
        """The resource's JSON, as sealed: answered as it is, never parsed on a read."""
        return key.open(sealed, record_context(record.patient, record.id, record.version))

    def _permit(self, reader: Reader, patient: str, access: Access) -> None:
        self._facts.write(access_event(reader, patient, access))

    def _refuse(
        self,
        reader: Reader,
        patient: str,
        action: str,
        error: DomainError,
        record_ids: Sequence[str] = (),
    ) -> NoReturn:
        self._facts.write(
            access_event(reader, patient, Access.refused(action, error.detail, record_ids))
        )
        raise error


def _denied(allowed: Verdict) -> PermissionDenied:
    return PermissionDenied(allowed.reason or "access denied")


def _bundle(resources: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }
