"""The audit HTTP API: the trail, disclosures, verification, checkpoints, break-glass review."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Response, current_app, request, stream_with_context, url_for
from flask_smorest import Blueprint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.audit import domain
from services.audit.domain import ChainedEntry
from services.audit.fhir_export import audit_bundle
from services.audit.schemas import (
    BreakGlassArgs,
    BreakGlassPage,
    CheckpointRead,
    DisclosureArgs,
    DisclosurePage,
    EntryPage,
    ReviewCreate,
    ReviewRead,
    TrailArgs,
    VerifyReport,
)
from services.audit.signing import ALGORITHM, is_signed_by
from services.audit.store import AuditUnitOfWork, TrailQuery
from shared.errors import Conflict, NotFound
from shared.events import new_event
from shared.fhir import preferred
from shared.http import current_principal

blp = Blueprint("audit", __name__, description="The tamper-evident audit trail")

JSON = "application/json"
CSV = "text/csv"
FHIR_JSON = "application/fhir+json"
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
    "source",
    "trace_id",
    "topic",
    "partition",
    "offset",
    "seq",
    "hash",
)


@dataclass(frozen=True)
class AuditContext:
    """What the views need, built by `create_app`."""

    sessions: sessionmaker[Session]
    public_key: Ed25519PublicKey
    public_key_pem: str


def _context() -> AuditContext:
    context: AuditContext = current_app.extensions["audit"]
    return context


def unit_of_work() -> AuditUnitOfWork:
    return AuditUnitOfWork(_context().sessions)


def entry_json(stored: ChainedEntry) -> dict[str, Any]:
    return {**stored.entry.as_dict(), "prev_hash": stored.prev_hash, "hash": stored.hash}


@blp.route("/audit/events")
@blp.arguments(TrailArgs, location="query", as_kwargs=True)
@blp.response(200, EntryPage)
@blp.alt_response(200, content_type=CSV, description="every matching entry, streamed", success=True)
@blp.alt_response(200, content_type=FHIR_JSON, description="a Bundle of AuditEvents", success=True)
def search_events(
    limit: int,
    cursor: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    **filters: str,
) -> Any:
    """Search the trail, newest first: JSON, CSV or a FHIR Bundle of AuditEvents."""
    query = TrailQuery(
        patient=domain.trail_scope(current_principal(), filters.get("patient")),
        actor=filters.get("actor"),
        type=domain.check_type_filter(filters.get("type")),
        outcome=filters.get("outcome"),
        since=_utc(since),
        until=_utc(until),
    )
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


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite keeps wall-clock times: every moment is compared in UTC, as entries are stored.
    return moment.astimezone(UTC) if moment is not None else None


def _csv_response(query: TrailQuery) -> Response:
    sessions = _context().sessions

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        with AuditUnitOfWork(sessions) as uow:
            for count, stored in enumerate(uow.trail.stream(query), start=1):
                writer.writerow(_csv_row(stored))
                if count % 200 == 0:
                    yield _drain(buffer)
        yield _drain(buffer)

    return Response(
        stream_with_context(rows()),
        mimetype=CSV,
        headers={"Content-Disposition": 'attachment; filename="audit-trail.csv"'},
    )


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_row(stored: ChainedEntry) -> list[Any]:
    values = entry_json(stored) | {"id": stored.entry.event_id}
    return [_csv_cell(values[name]) for name in CSV_COLUMNS]


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = ";".join(value)
    # A spreadsheet would run a cell starting with these as a formula (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@blp.route("/audit/patients/<string:patient_id>/disclosures")
@blp.arguments(DisclosureArgs, location="query", as_kwargs=True)
@blp.response(200, DisclosurePage)
def list_disclosures(
    patient_id: str, limit: int, cursor: str | None, since: datetime | None = None
) -> dict[str, Any]:
    """List who accessed the patient's records, other than the patient (six years back)."""
    domain.require_disclosure_reader(current_principal(), patient_id)
    start = domain.disclosure_since(datetime.now(UTC), _utc(since))
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


@blp.route("/audit/verify")
@blp.response(200, VerifyReport)
def verify_trail() -> dict[str, Any]:
    """Recompute every hash chain and hold it to the latest signed checkpoint."""
    domain.require_compliance(current_principal())
    context = _context()
    with unit_of_work() as uow:
        latest = uow.checkpoints.latest()
        signature_ok = latest is not None and is_signed_by(context.public_key, latest)
        signed = (
            {(h.topic, h.partition): h for h in latest.heads}
            if latest is not None and signature_ok
            else {}
        )
        reports = domain.check_chains(uow.trail.in_chain_order(), signed)
    checkpoint = {"created_at": latest.created_at, "signature_ok": signature_ok} if latest else None
    return {
        "ok": all(r.ok for r in reports) and (latest is None or signature_ok),
        "checkpoint": checkpoint,
        "partitions": [asdict(r) for r in reports],
    }


@blp.route("/audit/checkpoints/latest")
@blp.response(200, CheckpointRead)
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
@blp.arguments(BreakGlassArgs, location="query", as_kwargs=True)
@blp.response(200, BreakGlassPage)
def list_break_glass(limit: int, cursor: str | None, reviewed: bool | None = None) -> Any:
    """List break-the-glass accesses, optionally only the (un)reviewed ones."""
    domain.require_compliance(current_principal())
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
@blp.arguments(ReviewCreate)
@blp.response(201, ReviewRead)
def review_break_glass(body: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """Record a compliance decision on a break-glass access; the review becomes a fact."""
    principal = current_principal()
    domain.require_compliance(principal)
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
