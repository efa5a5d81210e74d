"""The chart's use cases.

Writes are each a transaction of the unit of work, their event in its outbox. Reads emit one
access fact and answer only once it is committed, refusals included: `_refuse` commits the
`access.denied` fact, then raises the error the caller sees. Only requests refused before
reaching the chart (no valid token, malformed input) emit nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Engine

from services.records.domain import (
    ENTERED_IN_ERROR,
    Access,
    Criteria,
    Reader,
    Record,
    Restriction,
    Verdict,
    access_event,
    break_glass_note_opened,
    chart_refusal,
    may_erase,
    may_open_break_glass_note,
    needs_consent,
    new_record,
    patient_erased,
    record_changed,
    record_entered_in_error,
    require_scope,
    scope_allows,
    scope_terms,
    verdict,
    within_scope,
)
from services.records.resources import (
    ClinicalResource,
    as_entered_in_error,
    clinical_date,
    dumps,
    loads,
    validate_resource,
)
from services.records.sealing import (
    CannotOpen,
    DataKey,
    KeyRing,
    Sealed,
    note_context,
    record_context,
)
from services.records.store import ChartKey, ChartReading, ChartUnitOfWork, Search, StoredRecord
from shared.auth import Principal
from shared.consent_rules import ConsentTerms
from shared.db import Reading
from shared.errors import DomainError, Gone, InvalidInput, NotFound, PermissionDenied
from shared.fact_writer import FactWriter
from shared.fresh_cache import VersionedCache
from shared.paging import decode_cursor, encode_cursor

MAX_LIMIT = 100
T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    content: bytes  # the FHIR resource's JSON, as it was sealed (and marked if in error)
    patient: str

    @property
    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = loads(self.content)
        return resource

    @property
    def fhir_id(self) -> str:
        return fhir_id(self.category, self.patient, self.id)

    @classmethod
    def of(cls, record: Record, content: bytes) -> RecordView:
        if record.status == ENTERED_IN_ERROR:
            content = as_entered_in_error(record.category, content)
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
            record.patient,
        )


def fhir_id(category: str, patient: str, record_id: str) -> str:
    """A record's FHIR id: the chart's Patient is `Patient/{patient}`, the rest their record's."""
    return patient if category == "Patient" else record_id


@dataclass(frozen=True)
class Page:
    items: list[RecordView]
    next_cursor: str | None


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    code: str | None = None
    since: datetime | None = None
    limit: int | None = 20  # None: all at once
    cursor: str | None = None
    criteria: Criteria = Criteria()
    newest_date_first: bool | None = None  # None: newest written first


@dataclass
class Visible:
    """What a scan of the chart found: records shown, verdicts of those withheld."""

    shown: list[tuple[StoredRecord, Verdict]] = field(default_factory=list)
    withheld: list[Verdict] = field(default_factory=list)
    more: bool = False
    opened: dict[str, bytes] = field(default_factory=dict)  # content read during the scan
    dates: dict[str, tuple[datetime, datetime] | None] = field(default_factory=dict)

    def access(self, action: str) -> Access:
        return Access.of(action, [(s.record, v) for s, v in self.shown], self.withheld)


@dataclass(frozen=True)
class Scan:
    """How to scan a chart: for which permission, what to match, how many to keep."""

    permission: str
    criteria: Criteria
    limit: int | None


Terms = tuple[Restriction, ...] | None  # a granular scope's restrictions, None if unrestricted
_OUT_OF_SCOPE = Verdict(False, reason="the token's granular scopes do not cover the record")


def _by_date(
    found: Visible, newest_first: bool, offset: str | None, limit: int | None
) -> tuple[Visible, str | None]:
    """One page of what a scan found, in order of the resources' own dates (undated last)."""
    dated = [(s, v) for s, v in found.shown if found.dates.get(s.record.id)]
    undated = [(s, v) for s, v in found.shown if not found.dates.get(s.record.id)]
    dated.sort(
        key=lambda sv: found.dates[sv[0].record.id] or (_EPOCH, _EPOCH), reverse=newest_first
    )
    ordered = dated + undated
    if offset is not None and not offset.isdigit():
        raise InvalidInput("the cursor is not one this service gave out")
    start = int(offset or 0)
    end = len(ordered) if limit is None else start + limit
    page = replace(found, shown=ordered[start:end], more=end < len(ordered))
    return page, encode_cursor(str(end)) if page.more else None


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

    def open_break_glass_note(self, principal: Principal, patient: str, sealed: str) -> str:
        """The text of a break-glass note sealed for `patient`, for compliance staff; opening
        it is an access fact. Gone with the patient's data key once they were erased."""
        may_open_break_glass_note(principal)
        with self._reading() as reading:
            chart = reading.charts.get(patient=patient)
        if chart is not None and chart.erased:
            raise Gone("the note was erased with the patient's data")
        key = self._unwrap(chart)
        try:
            if key is None:
                raise CannotOpen("no data key")
            text = key.open(Sealed.from_text(sealed), note_context(patient)).decode()
        except CannotOpen:
            # Not a note, or another patient's: say nothing of which.
            raise InvalidInput("not a break-glass note sealed for this patient") from None
        self._facts.write(break_glass_note_opened(principal, patient))
        return text

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
        content = self._open(key, record, found.content)
        if not _in_scope(reader, record, content, "r"):
            self._refuse(reader, patient, "read", _denied(_OUT_OF_SCOPE), [record_id])
        view = RecordView.of(record, content)
        self._permit(reader, patient, Access.of("read", [(record, allowed)], []))
        return view

    def search(self, reader: Reader, patient: str, filters: Filters) -> Page:
        """The current records the reader may see, newest first, a page at a time."""
        if filters.category and not scope_allows(reader.principal, filters.category, "s"):
            self._refuse_chart(reader, patient, "search")
            refusal = f"the token's scopes do not allow searching {filters.category}"
            self._refuse(reader, patient, "search", PermissionDenied(refusal))
        return self._list(reader, patient, filters, "search", "s")

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
            content = self._open(key, at_version, v.content)
            if not _in_scope(reader, at_version, content, "r"):
                self._refuse(reader, patient, "vread", _denied(_OUT_OF_SCOPE), [record_id])
            views.append(RecordView.of(at_version, content))
        self._permit(reader, patient, Access.of("vread", [(record, allowed)], []))
        return Page(views, encode_cursor(stored[-1].version) if more else None)

    def export(self, reader: Reader, patient: str, filters: Filters | None = None) -> Page:
        """The chart as the reader may see it (`$everything`), all at once unless paged."""
        return self._list(reader, patient, filters or Filters(limit=None), "export", "r")

    def locate(self, category: str, fhir_id: str) -> tuple[str, str] | None:
        """The chart and record of a FHIR id, without reading it (so without a fact): the
        chart's Patient is its newest current Patient record."""
        with self._reading() as reading:
            if category == "Patient":
                found = reading.records.newest(patient=fhir_id, category=category)
                return (fhir_id, found) if found is not None else None
            located = reading.records.locate(record_id=fhir_id)
        if located is None or located[1] != category:
            return None
        return located[0], fhir_id

    def _list(
        self, reader: Reader, patient: str, filters: Filters, action: str, permission: str
    ) -> Page:
        """A page of what the reader may see, with its one access fact.

        In write order, a page is a bounded scan after a position. In order of the resources'
        own dates, which are sealed with their content, it is a page of the whole visible
        chart, read and sorted per request: fine for a chart, not for a population."""
        by_date = filters.newest_date_first is not None
        kind: type[Any] = str if by_date else int
        position = decode_cursor(filters.cursor, kind)
        limit = None if filters.limit is None else max(1, min(filters.limit, MAX_LIMIT))
        criteria = replace(filters.criteria, by_date=by_date)
        self._refuse_chart(reader, patient, action)
        with self._reading() as reading:
            version = reading.records.enforcement_version()
            key = self._reading_key(reading, version, reader, patient, action)
            if key is not None:
                digest = key.digest(filters.code) if filters.code else None
                before = None if by_date else position
                search = Search(patient, filters.category, digest, filters.since, before)
                scan = Scan(permission, criteria, None if by_date else limit)
                found = self._visible(reading, version, reader, search, scan, key)
        if key is None:
            self._permit(reader, patient, Access(action, True))
            return Page([], None)
        next_cursor = encode_cursor(found.shown[-1][0].seq) if found.more else None
        if by_date:
            found, next_cursor = _by_date(found, bool(filters.newest_date_first), position, limit)
        items = [
            RecordView.of(
                s.record, found.opened.get(s.record.id) or self._open(key, s.record, s.content)
            )
            for s, _ in found.shown
        ]
        self._permit(reader, patient, found.access(action))
        return Page(items, next_cursor)

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
            scan = Scan("s", Criteria(), None)
            for category in categories:
                if key is None:
                    break
                search = Search(patient, category)
                part = self._visible(reading, version, reader, search, scan, key)
                found.shown.extend(part.shown)
                found.withheld.extend(part.withheld)
                found.opened.update(part.opened)
        if found.withheld and not found.shown:
            self._refuse(reader, patient, "search", _denied(found.withheld[0]))
        views = [
            RecordView.of(
                s.record, found.opened.get(s.record.id) or self._open(key, s.record, s.content)
            )
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
        scan: Scan,
        key: DataKey,
    ) -> Visible:
        """Scan matching records newest first, keeping up to `scan.limit` the reader may see."""
        consents = _Consents(lambda: self._consents(reading, version, reader, search.patient))
        found = Visible()
        limit = scan.limit
        # A page and a half: room for some withheld records without a second query, and not
        # so many rows that building the unused ones costs more than a query.
        batch_size = 200 if limit is None else limit + 1 + limit // 2
        now = self._clock()
        # Within one scan a verdict, and the granular scopes' terms, depend only on what these
        # say of a record.
        verdicts: dict[tuple[str, frozenset[str], str | None], tuple[Verdict, Terms]] = {}
        while True:
            batch = reading.records.search(search, limit=batch_size)
            for stored in batch:
                record = stored.record
                if not scan.criteria.admits_record(record):
                    continue
                alike = (record.category, record.security, record.author_org)
                if alike not in verdicts:
                    consented = consents.for_record(reader, record)
                    verdicts[alike] = (
                        verdict(reader, record, consented, at=now, permission=scan.permission),
                        scope_terms(reader.principal, record.category, scan.permission),
                    )
                allowed, terms = verdicts[alike]
                checked = self._within(stored, key, scan, found, allowed, terms)
                if checked is None:
                    continue  # not what was searched for
                if not checked.permit:
                    found.withheld.append(checked)
                elif limit is not None and len(found.shown) == limit:
                    found.more = True
                    return found
                else:
                    found.shown.append((stored, checked))
            if len(batch) < batch_size:
                return found
            search = replace(search, before_seq=batch[-1].seq)

    def _within(
        self,
        stored: StoredRecord,
        key: DataKey,
        scan: Scan,
        found: Visible,
        allowed: Verdict,
        terms: Terms,
    ) -> Verdict | None:
        """A record's verdict once its content is read where the search or a granular scope
        (`terms`) needs it: None if it is not what was searched for, a refusal if the token's
        scopes do not cover it."""
        record = stored.record
        if not allowed.permit or (terms is None and not scan.criteria.needs_content):
            return allowed
        content = self._open(key, record, stored.content)
        resource = loads(content)
        if not scan.criteria.admits(record.category, resource):
            return None
        if terms is not None and not within_scope(record.category, resource, terms):
            return _OUT_OF_SCOPE
        found.opened[record.id] = content
        if scan.criteria.by_date:
            found.dates[record.id] = clinical_date(record.category, resource)
        return allowed

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

    def refuse_if_unreadable(
        self, reader: Reader, patient: str, action: str, record_ids: Sequence[str] = ()
    ) -> None:
        """Refuse, as a fact, a reader who may read nothing of this chart: before their query
        is looked at, so a refused reader learns nothing of what it should have been."""
        self._refuse_chart(reader, patient, action, record_ids)

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
            fhir_id(record.category, record.patient, record.id),
            record.version,
            record.updated_at.isoformat().replace("+00:00", "Z"),
        )
        context = record_context(record.patient, record.id, record.version)
        content = dumps(stored)
        return content, key.seal(content, context)

    def _open(self, key: DataKey, record: Record, sealed: Sealed) -> bytes:
        """The resource's JSON, as sealed: answered as it is, never parsed on a read."""
        return key.open(sealed, record_context(record.patient, record.id, record.version))

    def _sealed_note(self, reader: Reader, patient: str) -> str | None:
        """The reader's break-glass note sealed with the chart's data key, for their access
        fact. A chart never written has no key yet, and an erased one none any more: the note
        is not kept then (the fact keeps the reason code)."""
        if reader.break_glass_note is None:
            return None
        with self._reading() as reading:
            chart = reading.charts.get(patient=patient)
        key = self._unwrap(chart) if chart is not None and not chart.erased else None
        if key is None:
            return None
        return key.seal(reader.break_glass_note.encode(), note_context(patient)).to_text()

    def _permit(self, reader: Reader, patient: str, access: Access) -> None:
        self._facts.write(access_event(reader, patient, access, self._sealed_note(reader, patient)))

    def _refuse(
        self,
        reader: Reader,
        patient: str,
        action: str,
        error: DomainError,
        record_ids: Sequence[str] = (),
    ) -> NoReturn:
        refused = Access.refused(action, error.detail, record_ids)
        self._facts.write(
            access_event(reader, patient, refused, self._sealed_note(reader, patient))
        )
        raise error


def _in_scope(reader: Reader, record: Record, content: bytes, permission: str) -> bool:
    terms = scope_terms(reader.principal, record.category, permission)
    return terms is None or within_scope(record.category, loads(content), terms)


def _denied(allowed: Verdict) -> PermissionDenied:
    return PermissionDenied(allowed.reason or "access denied")
