"""The audit HTTP API: the trail, disclosures, verification, checkpoints, break-glass review."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Response, current_app, request, stream_with_context, url_for
from flask_smorest import Blueprint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.audit import domain, verification
from services.audit.directory import Directory
from services.audit.domain import ChainedEntry
from services.audit.fhir_export import audit_bundle
from services.audit.schemas import (
    BreakGlassArgs,
    BreakGlassPage,
    BreakGlassRead,
    CheckpointRead,
    DirectoryRead,
    DisclosureArgs,
    DisclosurePage,
    EntryPage,
    ReviewCreate,
    ReviewRead,
    TrailArgs,
    TrailFilters,
    TrailSummary,
    VerificationArgs,
    VerificationList,
    VerifyReport,
    WhoAmI,
)
from services.audit.signing import ALGORITHM, signature_verifies
from services.audit.store import AuditUnitOfWork, Tally, TrailQuery
from shared.errors import Conflict, NotFound
from shared.events import new_event
from shared.fhir import preferred
from shared.http import authorized_by, current_principal
from shared.problems import served_as

blp = Blueprint("audit", __name__, description="The tamper-evident audit trail")

JSON = "application/json"
CSV = "text/csv"
FHIR_JSON = "application/fhir+json"
DISCLOSURE_COLUMNS = (
    "entry_id",
    "time",
    "actor",
    "role",
    "org",
    "action",
    "outcome",
    "reason",
    "purpose",
    "record_ids",
    "categories",
    "consent_ids",
    "break_glass_reason",
)
CSV_COLUMNS = (
    "id",
    "time",
    "type",
    "actor",
    "role",
    "org",
    "patient",
    "action",
    "outcome",
    "purpose",
    "record_ids",
    "categories",
    "consent_ids",
    "break_glass_reason",
    "break_glass_note",
    "reason",
    "source",
    "trace_id",
    "topic",
    "partition",
    "offset",
    "seq",
    "hash",
)
CSV_TRAIL = {"type": "string", "description": f"every matching entry: {', '.join(CSV_COLUMNS)}"}
CSV_DISCLOSURES = {
    "type": "string",
    "description": f"the whole accounting: {', '.join(DISCLOSURE_COLUMNS)}",
}
FHIR_BUNDLE = {
    "type": "object",
    "description": "a FHIR R4 Bundle (searchset) of AuditEvents, IHE BALP style",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]}},
}


@dataclass(frozen=True)
class AuditContext:
    """What the views need, built by `create_app`."""

    sessions: sessionmaker[Session]
    public_key: Ed25519PublicKey
    public_key_pem: str
    directory: Directory


def _context() -> AuditContext:
    context: AuditContext = current_app.extensions["audit"]
    return context


def unit_of_work() -> AuditUnitOfWork:
    return AuditUnitOfWork(_context().sessions)


def entry_json(stored: ChainedEntry) -> dict[str, Any]:
    return {**stored.entry.as_dict(), "prev_hash": stored.prev_hash, "hash": stored.hash}


@blp.route("/audit/events")
@authorized_by(domain.require_trail_reader)
@blp.arguments(TrailArgs, location="query", as_kwargs=True)
@blp.response(200, EntryPage)
@blp.doc(**served_as({CSV: CSV_TRAIL, FHIR_JSON: FHIR_BUNDLE}))
def search_events(limit: int, cursor: str | None, **filters: Any) -> Any:
    """Search the trail, newest first: JSON, CSV or a FHIR Bundle of AuditEvents."""
    query = _trail_query(filters)
    wanted = preferred(request.headers.get("Accept"), [JSON, CSV, FHIR_JSON], JSON)
    if wanted == CSV:
        return _csv_response(query)
    with unit_of_work() as uow:
        page = uow.trail.search(query, limit=limit, cursor=cursor)
    if wanted == FHIR_JSON:
        next_url = (
            url_for(
                request.endpoint or "",
                **{**request.args, "cursor": page.next_cursor},
                _external=True,
            )
            if page.next_cursor
            else None
        )
        bundle = audit_bundle(page.items, self_url=request.url, next_url=next_url)
        return Response(json.dumps(bundle), mimetype=FHIR_JSON)
    return {"items": [entry_json(s) for s in page.items], "next_cursor": page.next_cursor}


@blp.route("/audit/events/summary")
@authorized_by(domain.require_trail_reader)
@blp.arguments(TrailFilters, location="query", as_kwargs=True)
@blp.response(200, TrailSummary)
def summarize_events(**filters: Any) -> dict[str, Any]:
    """Count the entries a search matches: in all, permitted, refused, per day, per org."""
    query = _trail_query(filters)
    with unit_of_work() as uow:
        by_day = uow.trail.tally_by_day(query)
        by_org = uow.trail.tally_by_org(query)
    return {
        "total": sum(t.total for t in by_day),
        "permit": sum(t.permit for t in by_day),
        "deny": sum(t.deny for t in by_day),
        "by_day": [{"day": t.key, **_counts(t)} for t in by_day],
        "by_org": [{"org": t.key, **_counts(t)} for t in by_org],
    }


def _counts(tally: Tally) -> dict[str, int]:
    return {"total": tally.total, "permit": tally.permit, "deny": tally.deny}


@blp.route("/audit/events/<string:event_id>")
@blp.response(200, BreakGlassRead)
def show_event(event_id: str) -> dict[str, Any]:
    """Show one entry: its fact, its place in its chain and, for break-glass, its review."""
    principal = current_principal()
    scope = domain.trail_scope(principal, None)
    with unit_of_work() as uow:
        stored = uow.trail.get(event_id)
        if stored is None or scope not in (None, stored.entry.patient):
            raise NotFound(f"no entry {event_id} in the trail")
        review = uow.reviews.get(event_id)
    return entry_json(stored) | {"review": _review_json(review)}


def _trail_query(filters: dict[str, Any]) -> TrailQuery:
    return TrailQuery(
        patient=domain.trail_scope(current_principal(), filters.get("patient")),
        actor=filters.get("actor"),
        type=domain.check_type_filter(filters.get("type")),
        outcome=filters.get("outcome"),
        since=_utc(filters.get("since")),
        until=_utc(filters.get("until")),
        org=filters.get("org"),
        record=filters.get("record"),
    )


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite keeps wall-clock times: every moment is compared in UTC, as entries are stored.
    return moment.astimezone(UTC) if moment is not None else None


def _csv_response(query: TrailQuery) -> Response:
    return _csv_stream(
        CSV_COLUMNS,
        lambda uow: (entry_json(s) | {"id": s.entry.event_id} for s in uow.trail.stream(query)),
        "audit-trail.csv",
    )


def _csv_stream(
    columns: tuple[str, ...],
    values: Callable[[AuditUnitOfWork], Iterator[dict[str, Any]]],
    filename: str,
) -> Response:
    """Stream one row per item of `values` (read in their own unit of work) as CSV."""
    sessions = _context().sessions

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        with AuditUnitOfWork(sessions) as uow:
            for count, item in enumerate(values(uow), start=1):
                writer.writerow([_csv_cell(item[name]) for name in columns])
                if count % 200 == 0:
                    yield _drain(buffer)
        yield _drain(buffer)

    return Response(
        stream_with_context(rows()),
        mimetype=CSV,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = ";".join(value)
    # A spreadsheet would run a cell starting with these as a formula (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@blp.route("/audit/patients/<string:patient_id>/disclosures")
@authorized_by(
    lambda principal, patient_id: domain.require_disclosure_reader(principal, patient_id)
)
@blp.arguments(DisclosureArgs, location="query", as_kwargs=True)
@blp.response(200, DisclosurePage)
@blp.doc(**served_as({CSV: CSV_DISCLOSURES, FHIR_JSON: FHIR_BUNDLE}))
def list_disclosures(
    patient_id: str, limit: int, cursor: str | None, since: datetime | None = None
) -> Any:
    """List who accessed the patient's records, other than the patient (six years back);
    as CSV or a FHIR Bundle of AuditEvents, the whole accounting at once."""
    start = domain.disclosure_since(datetime.now(UTC), _utc(since))
    wanted = preferred(request.headers.get("Accept"), [JSON, CSV, FHIR_JSON], JSON)
    if wanted == CSV:
        return _csv_stream(
            DISCLOSURE_COLUMNS,
            lambda uow: (
                s.entry.as_dict() | {"entry_id": s.entry.event_id}
                for s in _disclosures(uow, patient_id, start)
            ),
            f"disclosures-{_file_safe(patient_id)}.csv",
        )
    if wanted == FHIR_JSON:
        with unit_of_work() as uow:
            bundle = audit_bundle(
                _disclosures(uow, patient_id, start), self_url=request.url, next_url=None
            )
        return Response(json.dumps(bundle), mimetype=FHIR_JSON)
    items: list[dict[str, Any]] = []
    with unit_of_work() as uow:
        # Pages of accesses may hold the patient's own reads; keep reading until a page of
        # disclosures is full or the accesses run out.
        while len(items) < limit:
            page = uow.trail.accesses(patient_id, since=start, limit=limit, cursor=cursor)
            items += [
                s.entry.as_dict() for s in page.items if domain.is_disclosure(s.entry, patient_id)
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
    return {
        "patient": patient_id,
        "since": domain.format_time(start),
        "items": items,
        "next_cursor": cursor,
    }


def _disclosures(uow: AuditUnitOfWork, patient: str, since: datetime) -> Iterator[ChainedEntry]:
    return (
        s
        for s in uow.trail.stream_accesses(patient, since=since)
        if domain.is_disclosure(s.entry, patient)
    )


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


@blp.route("/audit/whoami")
@blp.response(200, WhoAmI)
def who_am_i() -> dict[str, Any]:
    """Say who the bearer token speaks for, as this service verified it."""
    principal = current_principal()
    directory = _context().directory
    return {
        "actor": principal.actor,
        "role": principal.role,
        "sub": principal.sub,
        "org": principal.org,
        "patient": principal.patient,
        "name": directory.actors.get(principal.actor),
        "org_name": directory.organizations.get(principal.org or ""),
    }


@blp.route("/audit/directory")
@blp.response(200, DirectoryRead)
def show_directory() -> dict[str, Any]:
    """The display names of actors and organizations, from configuration."""
    domain.require_compliance(current_principal())
    directory = _context().directory
    return {"actors": dict(directory.actors), "organizations": dict(directory.organizations)}


@blp.route("/audit/verify")
@blp.response(200, VerifyReport)
def verify_trail() -> dict[str, Any]:
    """Recompute every hash chain and hold it to the latest signed checkpoint."""
    domain.require_compliance(current_principal())
    with unit_of_work() as uow:
        verdict = verification.verify_trail(uow, _context().public_key)
    latest = verdict.checkpoint
    return {
        "ok": verdict.ok,
        "checkpoint": (
            {"created_at": latest.created_at, "signature_ok": verdict.checkpoint_signature_ok}
            if latest
            else None
        ),
        "partitions": [asdict(r) for r in verdict.reports],
    }


@blp.route("/audit/verifications")
@authorized_by(domain.require_compliance)
@blp.arguments(VerificationArgs, location="query", as_kwargs=True)
@blp.response(200, VerificationList)
def list_verifications(limit: int) -> dict[str, Any]:
    """List the worker's scheduled verifications of every chain, newest first, each with
    whether its signature holds."""
    with unit_of_work() as uow:
        recent = uow.verifications.recent(limit)
    public_key = _context().public_key
    return {
        "items": [
            asdict(v)
            | {
                "signature_ok": signature_verifies(public_key, v.signature, v.payload()),
                "algorithm": ALGORITHM,
            }
            for v in recent
        ]
    }


@blp.route("/audit/checkpoints/latest")
@blp.response(200, CheckpointRead)
@blp.alt_response(404, response="NOT_FOUND", description="no checkpoint was signed yet")
def latest_checkpoint() -> dict[str, Any]:
    """Show the latest signed chain heads and the key that verifies them."""
    domain.require_compliance(current_principal())
    with unit_of_work() as uow:
        latest = uow.checkpoints.latest()
    if latest is None:
        raise NotFound("no checkpoint has been signed yet")
    return {
        "created_at": latest.created_at,
        "heads": [h.as_dict() for h in latest.heads],
        "signature": latest.signature,
        "algorithm": ALGORITHM,
        "public_key": _context().public_key_pem,
    }


@blp.route("/audit/break-glass")
@authorized_by(domain.require_compliance)
@blp.arguments(BreakGlassArgs, location="query", as_kwargs=True)
@blp.response(200, BreakGlassPage)
def list_break_glass(limit: int, cursor: str | None, reviewed: bool | None = None) -> Any:
    """List break-the-glass accesses, optionally only the (un)reviewed ones."""
    with unit_of_work() as uow:
        page = uow.trail.break_glass(reviewed=reviewed, limit=limit, cursor=cursor)
        decided = uow.reviews.of([s.entry.event_id for s in page.items])
    return {
        "items": [
            entry_json(s) | {"review": _review_json(decided.get(s.entry.event_id))}
            for s in page.items
        ],
        "next_cursor": page.next_cursor,
    }


def _review_json(review: domain.Review | None) -> dict[str, Any] | None:
    return asdict(review) if review else None


@blp.route("/audit/break-glass/<string:entry_id>/review", methods=["POST"])
@authorized_by(domain.require_compliance)
@blp.arguments(ReviewCreate)
@blp.response(201, ReviewRead)
@blp.alt_response(409, response="CONFLICT", description="the entry was already reviewed")
def review_break_glass(body: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """Record a compliance decision on a break-glass access; the review becomes a fact."""
    principal = current_principal()
    with unit_of_work() as uow:
        stored = uow.trail.get(entry_id)
        if stored is None:
            raise NotFound(f"no entry {entry_id} in the trail")
        if uow.reviews.get(entry_id) is not None:
            raise Conflict(f"entry {entry_id} was already reviewed")
        review = domain.review_break_glass(
            stored.entry,
            decision=body["decision"],
            note=body["note"],
            by=principal,
            now=datetime.now(UTC),
        )
        uow.reviews.add(review)
        uow.publish(
            new_event(
                "break-glass.reviewed",
                source_service="audit",
                subject=review.patient,
                actor=principal.actor,
                data={
                    "entry_id": review.entry_id,
                    "event_id": stored.entry.event_id,
                    "patient": review.patient,
                    "decision": review.decision,
                    "note": review.note,
                },
            )
        )
        try:
            uow.commit()
        except IntegrityError:
            raise Conflict(f"entry {entry_id} was already reviewed") from None
    return asdict(review)
