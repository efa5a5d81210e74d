"""The records HTTP API: load the request, call the chart, dump the answer."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import orjson
from flask import Response, current_app, json, request
from flask_smorest import Blueprint

from services.records.chart import Chart, Filters, Page, RecordView
from services.records.domain import Reader, patient_id, reader_from_headers
from services.records.reminders import Reminder
from services.records.reminding import ReminderBook
from services.records.resources import parse_body
from services.records.schemas import (
    Paging,
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
from shared.errors import InvalidInput
from shared.http import current_principal

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
        "schema": {"type": "string", "maxLength": 500},
        "description": "emergency access (practitioners only); flagged in the access event",
    },
]
_FHIR_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "a FHIR R4 resource of a chart category, e.g. Observation",
            }
        }
    },
}
_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def _chart() -> Chart:
    chart: Chart = current_app.extensions["records"]
    return chart


def _reminder_book() -> ReminderBook:
    book: ReminderBook = current_app.extensions["records.reminders"]
    return book


def _reader() -> Reader:
    return reader_from_headers(
        current_principal(),
        request.headers.get("X-Purpose-Of-Use"),
        request.headers.get("X-Break-Glass-Reason"),
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


def _expected_version() -> int | None:
    header = request.headers.get("If-Match")
    if header is None:
        return None
    match = _ETAG.match(header.strip())
    if not match:
        raise InvalidInput('If-Match must be an ETag of this API, e.g. W/"2"')
    return int(match.group(1))


@blp.route("/patients/<pid>/records", methods=["POST"])
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(201, RecordRead)
def add_record(pid: str) -> Any:
    """Add a FHIR resource to the patient's chart."""
    principal = current_principal()
    view = _chart().add(principal, patient_id(pid), parse_body(request.get_data()))
    response = _with_etag(view, 201)
    response.headers["Location"] = f"/patients/{pid}/records/{view.id}"
    return response


@blp.route("/patients/<pid>/records", methods=["GET"])
@blp.arguments(RecordSearch, location="query", as_kwargs=True)
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordPage)
def search_records(pid: str, **query: Any) -> Response:
    """List the records of the chart the reader may see, newest first."""
    reader = _reader()
    return _page(_chart().search(reader, patient_id(pid), Filters(**query)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
def read_record(pid: str, rid: UUID) -> Any:
    """Read one record of the chart."""
    reader = _reader()
    return _with_etag(_chart().read(reader, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["PUT"])
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(200, RecordRead)
def amend_record(pid: str, rid: UUID) -> Any:
    """Amend a record (its author only): the amendment becomes its next version."""
    principal = current_principal()
    expected = _expected_version()
    body = parse_body(request.get_data())
    return _with_etag(_chart().amend(principal, patient_id(pid), str(rid), body, expected))


@blp.route("/patients/<pid>/records/<uuid:rid>/entered-in-error", methods=["POST"])
@blp.response(200, RecordRead)
def mark_entered_in_error(pid: str, rid: UUID) -> Any:
    """Mark a record as entered in error (its author only); it is kept, marked."""
    principal = current_principal()
    return _with_etag(_chart().mark_entered_in_error(principal, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions", methods=["GET"])
@blp.arguments(Paging, location="query", as_kwargs=True)
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordPage)
def list_versions(pid: str, rid: UUID, **paging: Any) -> Response:
    """List the versions of a record, newest first."""
    reader = _reader()
    return _page(_chart().versions(reader, patient_id(pid), str(rid), **paging))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions/<int:version>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
def read_version(pid: str, rid: UUID, version: int) -> Any:
    """Read one version of a record."""
    reader = _reader()
    page = _chart().versions(reader, patient_id(pid), str(rid), version=version)
    return _with_etag(page.items[0])


@blp.route("/patients/<pid>/$everything", methods=["GET"])
@blp.doc(
    parameters=_READ_HEADERS,
    responses={
        "200": {
            "description": "a FHIR Bundle (searchset)",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        }
    },
)
def export_chart(pid: str) -> Response:
    """Export the chart the reader may see as a FHIR Bundle."""
    reader = _reader()
    bundle = _chart().export(reader, patient_id(pid))
    return Response(json.dumps(bundle), status=200, mimetype=FHIR_JSON)


@blp.route("/patients/<pid>", methods=["DELETE"])
@blp.response(204)
def erase_chart(pid: str) -> None:
    """Erase the patient's chart: its content can never be read again, anywhere."""
    _chart().erase(current_principal(), patient_id(pid))


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
def list_reminders(pid: str) -> Any:
    """List the patient's preventive-care reminders (dismissed ones left out)."""
    book = _reminder_book()
    reminders = book.reminders(_reader(), patient_id(pid))
    return {
        "rule_set_version": book.rule_set.version,
        "reminders": [_reminder(r) for r in reminders],
    }


@blp.route("/patients/<pid>/reminders/<rule_id>/snooze", methods=["POST"])
@blp.arguments(Snooze)
@blp.response(200, ReminderRead)
def snooze_reminder(body: dict[str, Any], pid: str, rule_id: str) -> Any:
    """Snooze a due reminder until a day (the patient only)."""
    reader = _reader()
    return _reminder(_reminder_book().snooze(reader, patient_id(pid), rule_id, body["until"]))


@blp.route("/patients/<pid>/reminders/<rule_id>/dismiss", methods=["POST"])
@blp.response(204)
def dismiss_reminder(pid: str, rule_id: str) -> None:
    """Dismiss a reminder for its present due date (the patient only)."""
    _reminder_book().dismiss(_reader(), patient_id(pid), rule_id)


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
@blp.arguments(TrendQuery, location="query", as_kwargs=True)
@blp.doc(
    parameters=_READ_HEADERS,
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
def read_trend(pid: str, code: str, since: Any = None, until: Any = None) -> Any:
    """The series of one code's values in the chart, from EHR and PHR, in one unit."""
    if since is not None and until is not None and since > until:
        raise InvalidInput("since must not be after until")
    wanted = code_of(code)
    reader = _reader()
    trend = chart_trend(_chart(), reader, patient_id(pid), wanted, since=since, until=until)
    if request.accept_mimetypes.best_match(["application/json", SVG]) == SVG:
        return Response(svg(trend), status=200, mimetype=SVG)
    return _trend_json(trend)
