"""The trail as a FHIR R4 REST base, `/fhir`: `AuditEvent` search, IHE BALP shaped.

The same trail search as `GET /audit/events` (the same rule of who may search what:
`domain.trail_scope`), its entries written as AuditEvents by `fhir_export`. `patient`, `agent`
and `date` narrow the query in the database; `type` and `outcome` are read off each AuditEvent,
so a page may hold fewer than `_count` entries while a `next` link says more may follow.
Errors are OperationOutcomes (`shared.fhir.mount`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from services.audit import domain
from services.audit.api import unit_of_work
from services.audit.fhir_export import audit_bundle, audit_event
from services.audit.store import TrailQuery
from shared.fhir import (
    DateRange,
    ResourceSupport,
    SearchParam,
    base_url,
    count_parameter,
    fhir_answer,
    fhir_response,
    negotiate,
    page_url,
    search_parameter_docs,
    search_parameters,
    serve_discovery,
    token_matches,
)
from shared.http import current_principal

blp = Blueprint(
    "fhir",
    __name__,
    url_prefix="/fhir",
    description="FHIR R4 REST: the audit trail as IHE BALP AuditEvents",
)

CAPABILITY_DATE = "2026-12-02"
SEARCH = (
    SearchParam("patient", "reference", "the patient's own trail, or any for compliance"),
    SearchParam("agent", "reference", "who acted: practitioner:dr-lee, Practitioner/dr-lee"),
    SearchParam("date", "date", "ge, le, gt, lt, or eq"),
    SearchParam("outcome", "token", "0 success, 4 minor failure (a denial)"),
    SearchParam("type", "token", "rest, 110106 (export), 110100; or a subtype: read, search-type"),
)
_FHIR_ANSWER = {"200": fhir_answer("a searchset Bundle of AuditEvents")}


@blp.before_request
def _negotiable() -> None:
    negotiate()


serve_discovery(
    blp,
    name="caretrail audit",
    resources=[ResourceSupport("AuditEvent", ["search-type"], SEARCH, versioning="no-version")],
    documentation=lambda: (
        "The tamper-evident trail of every caretrail fact, for compliance "
        "staff and for each patient (their own)."
    ),
    scopes=["patient/AuditEvent.rs", "user/AuditEvent.rs", "patient/*.rs", "user/*.rs"],
    date=CAPABILITY_DATE,
)


@blp.route("/AuditEvent", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER, parameters=search_parameter_docs(SEARCH))
def search() -> Response:
    """Search the trail, newest first, as a searchset Bundle of AuditEvents."""
    args = search_parameters(
        request.args.to_dict(flat=False), [p.name for p in SEARCH], request.headers.get("Prefer")
    )
    since, until = _date_bounds(args.get("date", []))
    query = TrailQuery(
        patient=domain.trail_scope(current_principal(), _patient(args.get("patient"))),
        actor=_agent(args.get("agent")),
        since=since,
        until=until,
    )
    cursor = args.get("_cursor")
    with unit_of_work() as uow:
        page = uow.trail.search(
            query, limit=count_parameter(args.get("_count")), cursor=cursor[-1] if cursor else None
        )
    kept = [s for s in page.items if _matches(audit_event(s), args)]
    url = base_url() + "/AuditEvent"
    params = request.args.items(multi=True)
    next_url = page_url(url, params, page.next_cursor) if page.next_cursor else None
    bundle = audit_bundle(kept, self_url=page_url(url, params), next_url=next_url)
    return fhir_response(bundle)


def _patient(values: Sequence[str] | None) -> str | None:
    return values[-1].removeprefix("Patient/") if values else None


def _agent(values: Sequence[str] | None) -> str | None:
    """`Practitioner/dr-lee` as the trail names actors (`practitioner:dr-lee`)."""
    if not values:
        return None
    kind, slash, subject = values[-1].partition("/")
    return f"{kind.lower()}:{subject}" if slash else values[-1]


def _date_bounds(values: Sequence[str]) -> tuple[datetime | None, datetime | None]:
    """[since, until) holding exactly the instants every `date` value admits."""
    since: datetime | None = None
    until: datetime | None = None
    for value in values:
        criterion = DateRange.parse("date", value)
        low = {"eq": criterion.start, "ge": criterion.start, "gt": criterion.end}
        high = {"eq": criterion.end, "le": criterion.end, "lt": criterion.start}
        if criterion.prefix in low:
            since = max(filter(None, (since, low[criterion.prefix])))
        if criterion.prefix in high:
            until = min(filter(None, (until, high[criterion.prefix])))
    return since, until


def _matches(event: dict[str, Any], args: dict[str, list[str]]) -> bool:
    """Whether an AuditEvent meets the `type` and `outcome` criteria (each: any of its values)."""
    if "type" in args:
        codings = [event["type"], *event.get("subtype", [])]
        if not any(token_matches(codings, token) for token in _values(args["type"])):
            return False
    return "outcome" not in args or event["outcome"] in _values(args["outcome"])


def _values(values: Sequence[str]) -> list[str]:
    """A search parameter's values: repeated, or comma-separated (either means "any of")."""
    return [one for value in values for one in value.split(",")]
