"""The chart as a FHIR R4 REST base, `/fhir`, beside the native API.

Each interaction is a call on the same `Chart` use case as its native twin (read, search,
versions, export, add, amend), so enforcement and the one access fact per read are theirs;
this module only translates FHIR's URLs, parameters and headers. Errors are OperationOutcomes
(`shared.fhir.mount`, wired in `app.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from services.records.api import chart, expected_version, request_reader
from services.records.bundles import bundle_of, full_url, next_url, relative_url
from services.records.chart import Filters, Page, RecordView
from services.records.domain import Criteria, patient_id
from services.records.resources import CATEGORY_TYPES, DATE_ELEMENTS, parse_body
from shared.auth import Principal
from shared.config import DEFAULT_PORTS
from shared.errors import InvalidInput, NotFound
from shared.events import CATEGORIES
from shared.fhir import (
    FORMAT_PARAMETER,
    DateRange,
    Entry,
    ResourceSupport,
    SearchParam,
    UnsupportedSearch,
    count_parameter,
    fhir_answer,
    fhir_response,
    history,
    negotiate,
    operation_outcome,
    preferences,
    scopes_for,
    search_parameters,
    serve_discovery,
)
from shared.http import authorized_by, current_principal, service_settings

blp = Blueprint(
    "fhir",
    __name__,
    url_prefix="/fhir",
    description="FHIR R4 REST: the chart's resources, under the same consent as the native API",
)


# Views whose `authorized_by` rule refuses a chart first: they negotiate after it, since a
# caller refused anyway must not learn from a 406 what `_format` or `Accept` this base takes.
_REFUSING_FIRST = {"fhir.everything"}


@blp.before_request
def _negotiable() -> None:
    """A 406 before the chart is read, not after its access fact."""
    if request.endpoint not in _REFUSING_FIRST:
        negotiate()


TYPES = "any(" + ", ".join(CATEGORIES) + ")"
CAPABILITY_DATE = "2026-12-02"
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
# The token parameter each type's `code` digests answer (R4 search parameter names).
CODE_PARAMETER = {
    "Immunization": "vaccine-code",
    "DocumentReference": "type",
    "Encounter": "type",
    "Patient": None,
}
_JSON_BODY = {
    "required": True,
    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
}
_FHIR_ANSWER = {"200": fhir_answer()}
# An erased chart is gone for every interaction on it (an OperationOutcome, as every error).
_ERASED = blp.alt_response(410, response="GONE", description="the chart was erased")
_NOT_CURRENT = blp.alt_response(409, response="CONFLICT", description="entered in error")
_NOT_MATCHED = blp.alt_response(412, response="PRECONDITION_FAILED", description="If-Match")


def search_params(resource_type: str) -> list[SearchParam]:
    """What a type's search takes, as its CapabilityStatement declares it."""
    params = [
        SearchParam("_id", "token"),
        SearchParam("_lastUpdated", "date", "ge, le, gt, lt, or eq"),
    ]
    if resource_type == "Patient":
        return params
    params.append(SearchParam("patient", "reference", "required unless the token is a patient's"))
    if resource_type not in ("AllergyIntolerance", "Immunization"):
        params.append(SearchParam("subject", "reference", "as patient"))
    code = CODE_PARAMETER.get(resource_type, "code")
    if code:
        params.append(SearchParam(code, "token", "system|code or code"))
    if resource_type in CATEGORY_TYPES:
        params.append(SearchParam("category", "token", "system|code or code"))
    if resource_type in DATE_ELEMENTS:
        params.append(SearchParam("date", "date", "ge, le, gt, lt, or eq; _sort=date or -date"))
    return params


def _supports() -> list[ResourceSupport]:
    interactions = ["read", "vread", "history-instance", "create", "update", "search-type"]
    return [
        ResourceSupport(
            t,
            interactions,
            search_params(t),
            operations=[("everything", EVERYTHING)] if t == "Patient" else (),
            extra={"updateCreate": True} if t == "Patient" else {},
        )
        for t in CATEGORIES
    ]


def _documentation() -> str:
    return (
        "The patient chart. Every read, search and $everything is an access fact; what the "
        "reader may not see is absent and counted nowhere. " + _elsewhere()
    )


def _elsewhere() -> str:
    """Where caretrail's other FHIR resources are: each service is a base of its own (local
    defaults, or CARETRAIL_RECORDS_CONSENT_FHIR_BASE and _AUDIT_FHIR_BASE); deploy/nginx
    serves all three under one base with one CapabilityStatement."""
    extra = service_settings().extra
    consent = extra.get("consent_fhir_base", f"http://127.0.0.1:{DEFAULT_PORTS['consent']}/fhir")
    audit = extra.get("audit_fhir_base", f"http://127.0.0.1:{DEFAULT_PORTS['audit']}/fhir")
    return f"Consent is served at {consent}, AuditEvent at {audit}."


serve_discovery(
    blp,
    name="caretrail records",
    resources=_supports(),
    documentation=_documentation,
    scopes=scopes_for(CATEGORIES),
    date=CAPABILITY_DATE,
)


# --- instances --------------------------------------------------------------------------------


@blp.route(f"/<{TYPES}:resource_type>/<resource_id>", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER)
@_ERASED
def read(resource_type: str, resource_id: str) -> Response:
    """Read a resource (the chart's Patient is `Patient/{patient id}`)."""
    reader = request_reader()
    patient, record_id = _locate(resource_type, resource_id)
    return _resource(chart().read(reader, patient, record_id))


@blp.route(f"/<{TYPES}:resource_type>/<resource_id>/_history/<int:version>", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER)
@_ERASED
def vread(resource_type: str, resource_id: str, version: int) -> Response:
    """Read one version of a resource."""
    reader = request_reader()
    patient, record_id = _locate(resource_type, resource_id)
    page = chart().versions(reader, patient, record_id, version=version)
    return _resource(page.items[0])


@blp.route(f"/<{TYPES}:resource_type>/<resource_id>/_history", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER)
@_ERASED
def instance_history(resource_type: str, resource_id: str) -> Response:
    """The versions of a resource, newest first, as a history Bundle."""
    args = search_parameters(request.args.to_dict(flat=False), (), _prefer())
    reader = request_reader()
    patient, record_id = _locate(resource_type, resource_id)
    page = chart().versions(
        reader,
        patient,
        record_id,
        limit=count_parameter(args.get("_count")),
        cursor=_last(args.get("_cursor")),
    )
    entries = [
        Entry(
            full_url(view),
            view.content,
            ("POST", view.category) if view.version == 1 else ("PUT", relative_url(view)),
            "201" if view.version == 1 else "200",
        )
        for view in page.items
    ]
    return fhir_response(history(entries, self_url=request.url, next_url=next_url(page)))


@blp.route(f"/<{TYPES}:resource_type>", methods=["POST"])
@blp.doc(requestBody=_JSON_BODY, responses={"201": _FHIR_ANSWER["200"]})
@_ERASED
def create(resource_type: str) -> Response:
    """Create a resource in the chart its `subject` or `patient` names (the Patient: its
    `id`, or the patient's own token): a patient writes PHR, a practitioner EHR."""
    principal = current_principal()
    body = _body_of(resource_type)
    patient = _chart_of(resource_type, body, principal.patient)
    return _written(chart().add(principal, patient, body), 201)


@blp.route(f"/<{TYPES}:resource_type>/<resource_id>", methods=["PUT"])
@blp.doc(requestBody=_JSON_BODY, responses=_FHIR_ANSWER)
@_NOT_MATCHED
@_NOT_CURRENT
@_ERASED
def update(resource_type: str, resource_id: str) -> Response:
    """Update a resource (its author only) as its next version; `If-Match` guards it."""
    principal = current_principal()
    expected = expected_version()
    body = _body_of(resource_type)
    if body.get("id") != resource_id:
        raise InvalidInput(
            "the resource's id must be the one in the URL",
            errors=[{"path": f"{resource_type}.id", "problem": "mismatch"}],
        )
    found = chart().locate(resource_type, resource_id)
    if found is None and resource_type == "Patient":
        # The chart's Patient has a known id, its chart's: a first PUT creates it.
        return _written(chart().add(principal, patient_id(resource_id), body), 201)
    patient, record_id = _located(resource_type, resource_id, found)
    return _written(chart().amend(principal, patient, record_id, body, expected), 200)


# --- search -----------------------------------------------------------------------------------


_SEARCH_DOC = [
    {
        "in": "query",
        "name": name,
        "required": False,
        "schema": {"type": "string"},
        "description": text,
    }
    for name, text in (
        ("patient", "the chart: `pid`, `Patient/pid` (required unless the token is a patient's)"),
        ("subject", "as patient"),
        ("_id", "ids, comma separated"),
        (
            "code",
            "token `system|code` or `code`, comma separated alternatives (vaccine-code for "
            "Immunization, type for DocumentReference and Encounter)",
        ),
        ("category", "token `system|code` or `code`, where the type has a category"),
        ("date", "the resource's clinical date, with ge, le, gt, lt or eq; repeatable"),
        ("_lastUpdated", "with ge, le, gt, lt or eq; repeatable"),
        ("_sort", "`date` or `-date`"),
        ("_count", "page size, 1 to 100"),
        ("_cursor", "the opaque position of a next link"),
    )
] + [FORMAT_PARAMETER]


@blp.route(f"/<{TYPES}:resource_type>", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER, parameters=_SEARCH_DOC)
@_ERASED
def search(resource_type: str) -> Response:
    """Search a chart's resources of a type: a searchset of what the reader may see."""
    supported = [p.name for p in search_params(resource_type)]
    args = search_parameters(request.args.to_dict(flat=False), supported, _prefer())
    reader = request_reader()
    filters = _filters(resource_type, args)
    if resource_type == "Patient":
        patient = patient_id(_last(args.get("_id")) or _own_chart(reader.principal.patient))
        filters = replace(filters, limit=1, criteria=replace(filters.criteria, ids=None))
    else:
        patient = _searched_chart(args, reader.principal.patient)
    page = chart().search(reader, patient, filters)
    if resource_type == "Patient":
        page = Page(page.items, None)  # the chart's one Patient: its newest entry
    return fhir_response(bundle_of(page, request.url))


_EVERYTHING_DOC = [
    {"in": "query", "name": name, "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("_type", {"type": "string"}, "the types to include, comma separated"),
        ("_since", {"type": "string"}, "only what was written since this instant"),
        ("_count", {"type": "string"}, "page size, 1 to 100 (50 unless given)"),
        ("_cursor", {"type": "string"}, "the opaque position of a next link"),
    )
] + [FORMAT_PARAMETER]


def _may_export(principal: Principal, pid: str) -> None:
    chart().refuse_if_unreadable(request_reader(), patient_id(pid), "export")


@blp.route("/Patient/<pid>/$everything", methods=["GET"])
@authorized_by(_may_export)  # refused before the query is read, as the native export
@blp.doc(responses=_FHIR_ANSWER, parameters=_EVERYTHING_DOC)
@_ERASED
def everything(pid: str) -> Response:
    """The chart the reader may see, a page at a time (`_type`, `_since`, `_count`)."""
    negotiate()  # once the rule let the reader in (see _REFUSING_FIRST), before the chart
    supported = ("_type", "_since")
    args = search_parameters(request.args.to_dict(flat=False), supported, _prefer())
    reader = request_reader()
    types = _last(args.get("_type"))
    since = _last(args.get("_since"))
    filters = Filters(
        since=_instant(since) if since else None,
        limit=count_parameter(args.get("_count"), default=50),
        cursor=_last(args.get("_cursor")),
        criteria=Criteria(types=_types(types) if types else None),
    )
    page = chart().export(reader, patient_id(pid), filters)
    return fhir_response(bundle_of(page, request.url))


def _filters(resource_type: str, args: dict[str, list[str]]) -> Filters:
    code_parameter = CODE_PARAMETER.get(resource_type, "code")
    codes = args.get(code_parameter or "", [])
    # One code is found by its digest in the store; alternatives are matched on the content.
    digest_code = codes[0] if len(codes) == 1 and "," not in codes[0] else None
    tokens = [("code", v) for v in codes if v != digest_code]
    tokens += [("category", v) for v in args.get("category", [])]
    ids = args.get("_id")
    criteria = Criteria(
        ids=frozenset(",".join(ids).split(",")) if ids else None,
        tokens=tuple(tokens),
        dates=tuple(DateRange.parse("date", v) for v in args.get("date", [])),
        last_updated=tuple(
            DateRange.parse("_lastUpdated", v) for v in args.get("_lastUpdated", [])
        ),
    )
    return Filters(
        category=resource_type,
        code=digest_code,
        limit=count_parameter(args.get("_count")),
        cursor=_last(args.get("_cursor")),
        criteria=criteria,
        newest_date_first=_date_order(resource_type, args.get("_sort")),
    )


def _date_order(resource_type: str, sort: Sequence[str] | None) -> bool | None:
    if not sort:
        return None
    if resource_type in DATE_ELEMENTS and sort[-1] in ("date", "-date"):
        return sort[-1] == "-date"
    if preferences(_prefer()).get("handling") == "lenient":
        return None
    raise UnsupportedSearch(f"_sort={sort[-1]} is not supported: use date or -date")


def _searched_chart(args: dict[str, list[str]], own: str | None) -> str:
    """The chart a search is about: `patient` or `subject`, or the patient's own."""
    named = {_reference_id(v) for v in args.get("patient", []) + args.get("subject", [])}
    if len(named) > 1:
        raise UnsupportedSearch("a search is about one patient: name one in patient or subject")
    return patient_id(named.pop() if named else _own_chart(own))


def _own_chart(own: str | None) -> str:
    if own is None:
        raise UnsupportedSearch("name the patient: a search is about one patient's chart")
    return own


def _reference_id(value: str) -> str:
    """`pid`, `Patient/pid` or `{base}/Patient/pid` as the patient id."""
    kind, _, ident = value.rstrip("/").rpartition("/")
    if kind and not kind.endswith("Patient"):
        raise UnsupportedSearch("patient and subject take a Patient reference")
    return ident


def _types(text: str) -> frozenset[str]:
    types = frozenset(t.strip() for t in text.split(","))
    unknown = types - set(CATEGORIES)
    if unknown:
        raise UnsupportedSearch(f"_type names types the chart does not hold: {sorted(unknown)}")
    return types


def _instant(text: str) -> datetime:
    try:
        return DateRange.parse("_since", text).start
    except UnsupportedSearch:
        raise UnsupportedSearch("_since must be an instant, e.g. 2026-01-31T00:00:00Z") from None


# --- the parts --------------------------------------------------------------------------------


def _locate(resource_type: str, resource_id: str) -> tuple[str, str]:
    return _located(resource_type, resource_id, chart().locate(resource_type, resource_id))


def _located(
    resource_type: str, resource_id: str, found: tuple[str, str] | None
) -> tuple[str, str]:
    if found is None:
        raise NotFound(f"no {resource_type}/{resource_id} here")
    return found


def _body_of(resource_type: str) -> dict[str, Any]:
    body = parse_body(request.get_data())
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise InvalidInput(
            f"the body must be a {resource_type}",
            errors=[{"path": "resourceType", "problem": "mismatch"}],
        )
    return body


def _chart_of(resource_type: str, body: dict[str, Any], own: str | None) -> str:
    """The chart a created resource goes to: its Patient's id, its subject's or patient's."""
    if resource_type == "Patient":
        named = body.get("id") or own
    else:
        references = [(body.get(e) or {}).get("reference") for e in ("subject", "patient")]
        named = (
            next((r.removeprefix("Patient/") for r in references if isinstance(r, str)), None)
            or own
        )
    if not isinstance(named, str):
        element = "id" if resource_type == "Patient" else "subject"
        raise InvalidInput(
            "name the patient whose chart this goes to",
            errors=[{"path": f"{resource_type}.{element}", "problem": "required"}],
        )
    return patient_id(named)


def _resource(view: RecordView, status: int = 200) -> Response:
    return fhir_response(view.content, status, _version_headers(view))


def _written(view: RecordView, status: int) -> Response:
    headers = _version_headers(view)
    headers["Location"] = f"{full_url(view)}/_history/{view.version}"
    wanted = preferences(request.headers.get("Prefer")).get("return", "representation")
    if wanted == "minimal":
        return Response(status=status, headers=headers)
    if wanted == "operationoutcome":
        outcome = operation_outcome(status, f"{view.category}/{view.fhir_id} was written")
        outcome["issue"][0].update(severity="information", code="informational")
        return fhir_response(outcome, status, headers)
    return fhir_response(view.content, status, headers)


def _version_headers(view: RecordView) -> dict[str, str]:
    return {
        "ETag": f'W/"{view.version}"',
        "Last-Modified": format_datetime(view.updated_at.astimezone(UTC), usegmt=True),
    }


def _prefer() -> str | None:
    return request.headers.get("Prefer")


def _last(values: Sequence[str] | None) -> str | None:
    return values[-1] if values else None
