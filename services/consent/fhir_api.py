"""Consents as a FHIR R4 REST base, `/fhir`, beside the native API.

`POST /fhir/Consent` is the native grant (`ledger.grant`, the same aggregate and the same
`consent.granted` event) with its terms read from a FHIR Consent; reads and searches apply the
native rules of who may see which consent. Errors are OperationOutcomes (`shared.fhir.mount`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from email.utils import format_datetime
from typing import Any

import orjson
from flask import Response, current_app, request
from flask_smorest import Blueprint
from sqlalchemy.orm import Session, sessionmaker
from uuid6 import uuid7

from services.consent import domain, ledger
from services.consent.domain import Consent, GrantConsent
from services.consent.fhir_consent import FHIR_PATHS, as_fhir, grant_terms
from services.consent.store import ConsentUnitOfWork
from shared.errors import InvalidInput, NotFound
from shared.fhir import (
    Entry,
    ResourceSupport,
    SearchParam,
    UnsupportedSearch,
    base_url,
    count_parameter,
    fhir_answer,
    fhir_response,
    negotiate,
    page_url,
    preferences,
    search_parameter_docs,
    search_parameters,
    searchset,
    serve_discovery,
)
from shared.http import current_principal
from shared.paging import decode_cursor, encode_cursor

blp = Blueprint(
    "fhir",
    __name__,
    url_prefix="/fhir",
    description="FHIR R4 REST: consents, granted and read as FHIR Consent resources",
)

CAPABILITY_DATE = "2026-12-02"
# Consent.status (R4) -> the aggregate's statuses; R4 has no "revoked" or "expired".
STATUSES: dict[str, tuple[str, ...]] = {
    "active": ("active",),
    "inactive": ("revoked", "expired"),
    "draft": (),
    "proposed": (),
    "rejected": (),
    "entered-in-error": (),
}
SEARCH = (
    SearchParam("patient", "reference", "required unless the token is a patient's"),
    SearchParam("status", "token", "active, or inactive (revoked or expired)"),
)
_FHIR_ANSWER = {"200": fhir_answer()}


@blp.before_request
def _negotiable() -> None:
    negotiate()


def _sessions() -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = current_app.extensions["consent"]
    return sessions


serve_discovery(
    blp,
    name="caretrail consent",
    resources=[ResourceSupport("Consent", ["read", "create", "search-type"], SEARCH)],
    documentation=lambda: (
        "The patient's consents: an opt-in permit to read, for named "
        "purposes, to one practitioner or organization, until an end. Revoke with the native API."
    ),
    scopes=["patient/Consent.crs", "user/Consent.rs", "patient/*.cruds", "user/*.cruds"],
    date=CAPABILITY_DATE,
)


@blp.route("/Consent/<consent_id>", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER)
def read(consent_id: str) -> Response:
    """Read a consent as a FHIR Consent (the patient, an admin or the grantee)."""
    principal = current_principal()
    principal.require_scope("Consent", "r")
    with ConsentUnitOfWork(_sessions()) as uow:
        consent = uow.consents.current(consent_id)
    if consent is None:
        raise NotFound(f"no Consent {consent_id}")
    domain.ensure_may_read(principal, consent)
    return fhir_response(as_fhir(consent), headers=_version_headers(consent))


@blp.route("/Consent", methods=["GET"])
@blp.doc(responses=_FHIR_ANSWER, parameters=search_parameter_docs(SEARCH))
def search() -> Response:
    """Search a patient's consents, newest first, as a searchset Bundle."""
    args = search_parameters(
        request.args.to_dict(flat=False), ("patient", "status"), request.headers.get("Prefer")
    )
    principal = current_principal()
    principal.require_scope("Consent", "s")
    patient = _patient(args.get("patient"), principal.patient)
    statuses = _statuses(args.get("status"))
    limit = count_parameter(args.get("_count"))
    cursor = args.get("_cursor")
    before = decode_cursor(cursor[-1], str) if cursor else None
    grantees = domain.grantees_visible_to(principal, patient)
    found: list[Consent] = []
    if statuses is None or statuses:
        with ConsentUnitOfWork(_sessions()) as uow:
            found = uow.consents.of_patient(
                patient, statuses=statuses, grantees=grantees, before=before, limit=limit + 1
            )
    page = found[:limit]
    url = base_url() + "/Consent"
    next_url = None
    if len(found) > limit:
        next_url = page_url(url, request.args.items(multi=True), encode_cursor(page[-1].id))
    entries = [Entry(f"{url}/{c.id}", orjson.dumps(as_fhir(c))) for c in page]
    self_url = page_url(url, request.args.items(multi=True))
    return fhir_response(searchset(entries, self_url=self_url, next_url=next_url))


@blp.route("/Consent", methods=["POST"])
@blp.doc(
    requestBody={"required": True, "content": {"application/fhir+json": {"schema": {}}}},
    responses={"201": _FHIR_ANSWER["200"]},
)
def create() -> Response:
    """Grant the consent a FHIR Consent describes: the native grant, the same event."""
    principal = current_principal()
    principal.require_scope("Consent", "c")
    terms = grant_terms(_body())
    command = GrantConsent(
        consent_id=str(uuid7()),
        patient=terms.patient,
        grantee=terms.grantee,
        actions=terms.actions,
        categories=terms.categories,
        security_labels=terms.security_labels,
        purposes=terms.purposes,
        start=terms.start,
        end=terms.end,
        at=ledger.now(),
        by=principal,
    )
    try:
        consent = ledger.grant(_sessions(), command)
    except InvalidInput as refused:
        raise InvalidInput(refused.detail, errors=_fhir_paths(refused.errors)) from None
    headers = _version_headers(consent)
    headers["Location"] = f"{base_url()}/Consent/{consent.id}/_history/{consent.version}"
    if preferences(request.headers.get("Prefer")).get("return") == "minimal":
        return Response(status=201, headers=headers)
    return fhir_response(as_fhir(consent), 201, headers)


def _body() -> Any:
    try:
        return json.loads(request.get_data())
    except ValueError:
        raise InvalidInput("the body is not JSON") from None


def _fhir_paths(errors: Any) -> list[dict[str, str]]:
    """The aggregate's refusals (by field) as elements of the Consent that was sent."""
    if not isinstance(errors, dict):
        return []
    return [
        {"path": FHIR_PATHS.get(name, "Consent"), "problem": "invalid", "message": message}
        for name, messages in errors.items()
        for message in (messages if isinstance(messages, list) else [messages])
    ]


def _patient(values: Sequence[str] | None, own: str | None) -> str:
    if not values:
        if own:
            return own
        raise UnsupportedSearch(
            "name the patient: ?patient=Patient/{id}",
            errors=[{"path": "patient", "problem": "required", "message": "required"}],
        )
    return values[-1].removeprefix("Patient/")


def _statuses(values: Sequence[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    codes = [code for value in values for code in value.split(",")]
    unknown = [code for code in codes if code not in STATUSES]
    if unknown:
        raise UnsupportedSearch(
            f"status is one of {', '.join(STATUSES)}",
            errors=[{"path": "status", "problem": "invalid", "message": "unknown status"}],
        )
    return tuple(s for code in codes for s in STATUSES[code])


def _version_headers(consent: Consent) -> dict[str, str]:
    return {
        "ETag": f'W/"{consent.version}"',
        "Last-Modified": format_datetime(consent.updated_at, usegmt=True),
    }
