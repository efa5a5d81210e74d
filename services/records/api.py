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
from services.records.domain import Reader, patient_id, reader_from_headers
from services.records.resources import parse_body
from services.records.schemas import Paging, ReadHeaders, RecordPage, RecordRead, RecordSearch
from shared.errors import InvalidInput
from shared.http import current_principal

blp = Blueprint("records", __name__, description="The patient chart: EHR and PHR entries")

FHIR_JSON = "application/fhir+json"
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


def chart() -> Chart:
    """The chart of the app serving the request."""
    found: Chart = current_app.extensions["records"]
    return found


def request_reader() -> Reader:
    """The reader of the request: its token, `X-Purpose-Of-Use`, `X-Break-Glass-Reason`."""
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
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(201, RecordRead)
def add_record(pid: str) -> Any:
    """Add a FHIR resource to the patient's chart."""
    principal = current_principal()
    view = chart().add(principal, patient_id(pid), parse_body(request.get_data()))
    response = _with_etag(view, 201)
    response.headers["Location"] = f"/patients/{pid}/records/{view.id}"
    return response


# These two views say their headers with a schema: a `doc(parameters=...)` would replace the
# query parameters flask-smorest documents from their arguments.
@blp.route("/patients/<pid>/records", methods=["GET"])
@blp.arguments(RecordSearch, location="query", as_kwargs=True)
@blp.arguments(ReadHeaders, location="headers", as_kwargs=True)
@blp.response(200, RecordPage)
def search_records(
    pid: str, purpose: str | None = None, break_glass_reason: str | None = None, **query: Any
) -> Response:
    """List the records of the chart the reader may see, newest first."""
    reader = reader_from_headers(current_principal(), purpose, break_glass_reason)
    return _page(chart().search(reader, patient_id(pid), Filters(**query)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
def read_record(pid: str, rid: UUID) -> Any:
    """Read one record of the chart."""
    reader = request_reader()
    return _with_etag(chart().read(reader, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>", methods=["PUT"])
@blp.doc(requestBody=_FHIR_BODY)
@blp.response(200, RecordRead)
def amend_record(pid: str, rid: UUID) -> Any:
    """Amend a record (its author only): the amendment becomes its next version."""
    principal = current_principal()
    expected = expected_version()
    body = parse_body(request.get_data())
    return _with_etag(chart().amend(principal, patient_id(pid), str(rid), body, expected))


@blp.route("/patients/<pid>/records/<uuid:rid>/entered-in-error", methods=["POST"])
@blp.response(200, RecordRead)
def mark_entered_in_error(pid: str, rid: UUID) -> Any:
    """Mark a record as entered in error (its author only); it is kept, marked."""
    principal = current_principal()
    return _with_etag(chart().mark_entered_in_error(principal, patient_id(pid), str(rid)))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions", methods=["GET"])
@blp.arguments(Paging, location="query", as_kwargs=True)
@blp.arguments(ReadHeaders, location="headers", as_kwargs=True)
@blp.response(200, RecordPage)
def list_versions(
    pid: str,
    rid: UUID,
    purpose: str | None = None,
    break_glass_reason: str | None = None,
    **paging: Any,
) -> Response:
    """List the versions of a record, newest first."""
    reader = reader_from_headers(current_principal(), purpose, break_glass_reason)
    return _page(chart().versions(reader, patient_id(pid), str(rid), **paging))


@blp.route("/patients/<pid>/records/<uuid:rid>/versions/<int:version>", methods=["GET"])
@blp.doc(parameters=_READ_HEADERS)
@blp.response(200, RecordRead)
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
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        }
    },
)
def export_chart(pid: str) -> Response:
    """Export the chart the reader may see as a FHIR Bundle."""
    reader = request_reader()
    page = chart().export(reader, patient_id(pid))
    return Response(bundle_of(page, request.url), status=200, mimetype=FHIR_JSON)


@blp.route("/patients/<pid>", methods=["DELETE"])
@blp.response(204)
def erase_chart(pid: str) -> None:
    """Erase the patient's chart: its content can never be read again, anywhere."""
    chart().erase(current_principal(), patient_id(pid))
