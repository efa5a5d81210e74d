"""The records HTTP API: load the request, call the chart, dump the answer."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import orjson
from flask import Response, current_app, request
from flask_smorest import Blueprint

from services.records.bundles import bundle_of
from services.records.chart import Chart, Filters, Page, RecordView
from services.records.domain import (
    Reader,
    may_open_break_glass_note,
    patient_id,
    reader_from_headers,
    writer_source,
)
from services.records.reminders import Reminder
from services.records.reminding import ReminderBook, require_reminder_owner
from services.records.resources import parse_body
from services.records.schemas import (
    BREAK_GLASS_NOTE_HELP,
    BREAK_GLASS_REASON_HELP,
    BreakGlassNoteOpen,
    BreakGlassNoteRead,
    Paging,
    ReadHeaders,
    RecordPage,
    RecordRead,
    RecordSearch,
    ReminderList,
    ReminderRead,
    Snooze,
    TrendQuery,
    TrendRead,
)
from services.records.trend_chart import svg
from services.records.trending import chart_trend
from services.records.trends import Trend, code_of
from shared.auth import Principal
from shared.break_glass import CODES as BREAK_GLASS_CODES
from shared.break_glass import MAX_NOTE_LENGTH
from shared.errors import InvalidInput
from shared.http import authorized_by, current_principal

blp = Blueprint("records", __name__, description="The patient chart: EHR and PHR entries")

FHIR_JSON = "application/fhir+json"
SVG = "image/svg+xml"
_READ_HEADERS = [
    {
        "in": "header",
        "name": "X-Purpose-Of-Use",
        "required": False,
        "schema": {
            "type": "string",
            "enum": ["TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT"],
            "default": "TREAT",
        },
    },
    {
        "in": "header",
        "name": "X-Break-Glass-Reason",
        "required": False,
        "schema": {"type": "string", "enum": list(BREAK_GLASS_CODES)},
        "description": BREAK_GLASS_REASON_HELP,
    },
    {
        "in": "header",
        "name": "X-Break-Glass-Note",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE_LENGTH},
        "description": BREAK_GLASS_NOTE_HELP,
    },
]
# Shown in Swagger UI and sent by tests/integration/test_api_examples.py: it must work.
OBSERVATION_EXAMPLE = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "4548-4",
                "display": "Hemoglobin A1c/Hemoglobin.total in Blood",
            }
        ]
    },
    "effectiveDateTime": "2026-11-30T08:00:00Z",
    "valueQuantity": {
        "value": 6.1,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    },
}
_FHIR_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "a FHIR R4 resource of a chart category, e.g. Observation",
            },
            "example": OBSERVATION_EXAMPLE,
        }
    },
}
_ERASED = blp.alt_response(410, response="GONE", description="the chart was erased")
_NOT_A_PATIENT_ID = blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description="bad id")
_NOT_CURRENT = blp.alt_response(409, response="CONFLICT", description="entered in error")
FHIR_BUNDLE = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]}},
}
_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def chart() -> Chart:
    """The chart of the app serving the request."""
    found: Chart = current_app.extensions["records"]
    return found


def _reminder_book() -> ReminderBook:
    book: ReminderBook = current_app.extensions["records.reminders"]
    return book


def request_reader() -> Reader:
    """The reader of the request: its token, `X-Purpose-Of-Use`, `X-Break-Glass-Reason`,
    `X-Break-Glass-Note`."""
    return reader_from_headers(
        current_principal(),
        request.headers.get("X-Purpose-Of-Use"),
        request.headers.get("X-Break-Glass-Reason"),
        request.headers.get("X-Break-Glass-Note"),
    )


def _view_json(view: RecordView) -> bytes:
    """The view as `RecordRead`, with its resource's JSON spliced in as it was sealed."""
    metadata = orjson.dumps(
        {
            "id": view.id,
            "version": view.version,
            "status": view.status,
            "source": view.source,
            "author": view.author,
            "author_org": view.author_org,
            "category": view.category,
            "security": view.security,
            "created_at": view.created_at.isoformat(),
            "updated_at": view.updated_at.isoformat(),
        }
    )
    return b"".join((metadata[:-1], b',"resource":', view.content, b"}"))


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, headers=headers, mimetype="application/json")


def _with_etag(view: RecordView, status: int = 200) -> Response:
    return _json(_view_json(view), status, {"ETag": f'W/"{view.version}"'})


def _page(page: Page) -> Response:
    items = b",".join(_view_json(view) for view in page.items)
    cursor = orjson.dumps(page.next_cursor)
    return _json(b"".join((b'{"items":[', items, b'],"next_cursor":', cursor, b"}")))


def _may_write(principal: Principal, pid: str) -> None:
    writer_source(principal, patient_id(pid))


def _may_search(principal: Principal, pid: str) -> None:
    chart().refuse_if_unreadable(request_reader(), patient_id(pid), "search")


def _may_manage_reminders(principal: Principal, pid: str) -> None:
    require_reminder_owner(principal, patient_id(pid))


def _may_list_versions(principal: Principal, pid: str, rid: UUID) -> None:
    chart().refuse_if_unreadable(request_reader(), patient_id(pid), "vread", [str(rid)])


def expected_version() -> int | None:
    """The version `If-Match` names, if any."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    match = _ETAG.match(header.strip())
    if not match:
        raise InvalidInput('If-Match must be an ETag of this API, e.g. W/"2"')
    return int(match.group(1))


@blp.route("/patients/<pid>/records", methods=["POST"])
@authorized_by(_may_write)
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(201, RecordRead)
@_ERASED
def add_record(pid: str) -> Any:
    """Add a FHIR resource to the patient's chart."""
    principal = current_principal()
    view = chart().add(principal, patient_id(pid), parse_body(request.get_data()))
    response = _with_etag(view, 201)
    response.headers["Location"] = f"/patients/{pid}/records/{view.id}"
    return response


# These views (and the trend's) say their headers with a schema: a `doc(parameters=...)` would
# replace the query parameters flask-smorest documents from their arguments.
@blp.route("/patients/<pid>/records", methods=["GET"])
@authorized_by(_may_search)
@blp.arguments(RecordSearch, location="query", as_kwargs=True)
@blp.arguments(ReadHeaders, location="headers", as_kwargs=True)
@blp.response(200, RecordPage)
@_ERASED
def search_records(
    pid: str,
    purpose: str | None = None,
    break_glass_reason: str | None = None,
    break_glass_note: str | None = None,
    **query: Any,
) -> Response:
    """List the records of the chart the reader may see, newest first."""
    reader = reader_from_headers(current_principal(), purpose, break_glass_reason, break_glass_note)
    return _page(chart().search(reader, patient_id(pid), Filters(**query)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
@_ERASED
def read_record(pid: str, rid: UUID) -> Any:
    """Read one record of the chart."""
    reader = request_reader()
    return _with_etag(chart().read(reader, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["PUT"])
@authorized_by(_may_write)
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(200, RecordRead)
@blp.alt_response(412, response="PRECONDITION_FAILED", description="If-Match: another version")
@_NOT_CURRENT
@_ERASED
def amend_record(pid: str, rid: UUID) -> Any:
    """Amend a record (its author only): the amendment becomes its next version."""
    principal = current_principal()
    expected = expected_version()
    body = parse_body(request.get_data())
    return _with_etag(chart().amend(principal, patient_id(pid), str(rid), body, expected))


@blp.route("/patients/<pid>/records/<uuid:rid>/entered-in-error", methods=["POST"])
@authorized_by(_may_write)
@blp.response(200, RecordRead)
@_NOT_A_PATIENT_ID
@_NOT_CURRENT
@_ERASED
def mark_entered_in_error(pid: str, rid: UUID) -> Any:
    """Mark a record as entered in error (its author only); it is kept, marked."""
    principal = current_principal()
    return _with_etag(chart().mark_entered_in_error(principal, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions", methods=["GET"])
@authorized_by(_may_list_versions)
@blp.arguments(Paging, location="query", as_kwargs=True)
@blp.arguments(ReadHeaders, location="headers", as_kwargs=True)
@blp.response(200, RecordPage)
@_ERASED
def list_versions(
    pid: str,
    rid: UUID,
    purpose: str | None = None,
    break_glass_reason: str | None = None,
    break_glass_note: str | None = None,
    **paging: Any,
) -> Response:
    """List the versions of a record, newest first."""
    reader = reader_from_headers(current_principal(), purpose, break_glass_reason, break_glass_note)
    return _page(chart().versions(reader, patient_id(pid), str(rid), **paging))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions/<int:version>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
@_ERASED
def read_version(pid: str, rid: UUID, version: int) -> Any:
    """Read one version of a record."""
    reader = request_reader()
    page = chart().versions(reader, patient_id(pid), str(rid), version=version)
    return _with_etag(page.items[0])


@blp.route("/patients/<pid>/$everything", methods=["GET"])
@blp.doc(
    parameters=_READ_HEADERS,
    responses={
        "200": {
            "description": "a FHIR Bundle (searchset)",
            "content": {FHIR_JSON: {"schema": FHIR_BUNDLE}},
        }
    },
)
@_ERASED
def export_chart(pid: str) -> Response:
    """Export the chart the reader may see as a FHIR Bundle."""
    reader = request_reader()
    page = chart().export(reader, patient_id(pid))
    return Response(bundle_of(page, request.url), status=200, mimetype=FHIR_JSON)


@blp.route("/patients/<pid>", methods=["DELETE"])
@blp.response(204)
@_NOT_A_PATIENT_ID
@_ERASED
def erase_chart(pid: str) -> None:
    """Erase the patient's chart: its content can never be read again, anywhere."""
    chart().erase(current_principal(), patient_id(pid))


@blp.route("/patients/<pid>/break-glass-notes/open", methods=["POST"])
@authorized_by(may_open_break_glass_note)
@blp.arguments(BreakGlassNoteOpen)
@blp.response(200, BreakGlassNoteRead)
@_NOT_A_PATIENT_ID
@blp.alt_response(410, response="GONE", description="erased with the patient's data")
def open_break_glass_note(body: dict[str, Any], pid: str) -> dict[str, str]:
    """Open a break-glass note of the patient's trail (compliance staff); it is a fact."""
    principal = current_principal()
    text = chart().open_break_glass_note(principal, patient_id(pid), body["note"])
    return {"note": text}


def _reminder(reminder: Reminder) -> dict[str, Any]:
    rule = reminder.rule
    return {
        "rule_id": rule.id,
        "title": rule.title,
        "kind": rule.kind,
        "status": reminder.status,
        "due_date": reminder.due_date,
        "snoozed_until": reminder.snoozed_until,
        "evidence": list(reminder.evidence),
        "source": {"title": rule.source.title, "url": rule.source.url},
    }


@blp.route("/patients/<pid>/reminders", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, ReminderList)
@_ERASED
def list_reminders(pid: str) -> Any:
    """List the patient's preventive-care reminders (dismissed ones left out)."""
    book = _reminder_book()
    reminders = book.reminders(request_reader(), patient_id(pid))
    return {
        "rule_set_version": book.rule_set.version,
        "reminders": [_reminder(r) for r in reminders],
    }


@blp.route("/patients/<pid>/reminders/<rule_id>/snooze", methods=["POST"])
@authorized_by(_may_manage_reminders)
@blp.arguments(Snooze)
@blp.response(200, ReminderRead)
@_ERASED
def snooze_reminder(body: dict[str, Any], pid: str, rule_id: str) -> Any:
    """Snooze a due reminder until a day (the patient only)."""
    reader = request_reader()
    return _reminder(_reminder_book().snooze(reader, patient_id(pid), rule_id, body["until"]))


@blp.route("/patients/<pid>/reminders/<rule_id>/dismiss", methods=["POST"])
@blp.response(204)
@_NOT_A_PATIENT_ID
@_ERASED
def dismiss_reminder(pid: str, rule_id: str) -> None:
    """Dismiss a reminder for its present due date (the patient only)."""
    _reminder_book().dismiss(request_reader(), patient_id(pid), rule_id)


def _trend_json(trend: Trend) -> dict[str, Any]:
    summary = trend.summary
    return {
        "code": {
            "system": trend.code.system,
            "code": trend.code.code,
            "display": trend.code.display,
        },
        "unit": trend.unit,
        "points": [
            {
                "time": p.time,
                "value": p.value,
                "unit": p.unit,
                "source": p.source,
                "record_id": p.record_id,
                "normalised": p.normalised,
            }
            for p in trend.points
        ],
        "summary": None
        if summary is None
        else {
            "min": summary.min,
            "max": summary.max,
            "last": summary.last,
            "direction": summary.direction,
        },
    }


@blp.route("/patients/<pid>/trends", methods=["GET"])
@authorized_by(_may_search)  # a trend reads like a search: one fact, the records it used
@blp.arguments(TrendQuery, location="query", as_kwargs=True)
@blp.arguments(ReadHeaders, location="headers", as_kwargs=True)
@blp.doc(
    responses={
        "200": {
            "description": "the series as JSON, or with `Accept: image/svg+xml` an SVG chart",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TrendRead"}},
                SVG: {"schema": {"type": "string", "description": "an SVG document"}},
            },
        }
    },
)
@blp.response(200, TrendRead)
@_ERASED
def read_trend(
    pid: str,
    code: str,
    since: Any = None,
    until: Any = None,
    purpose: str | None = None,
    break_glass_reason: str | None = None,
    break_glass_note: str | None = None,
) -> Any:
    """The series of one code's values in the chart, from EHR and PHR, in one unit."""
    if since is not None and until is not None and since > until:
        raise InvalidInput("since must not be after until")
    wanted = code_of(code)
    reader = reader_from_headers(current_principal(), purpose, break_glass_reason, break_glass_note)
    trend = chart_trend(chart(), reader, patient_id(pid), wanted, since=since, until=until)
    if request.accept_mimetypes.best_match(["application/json", SVG]) == SVG:
        return Response(svg(trend), status=200, mimetype=SVG)
    return _trend_json(trend)
