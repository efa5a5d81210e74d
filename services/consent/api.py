"""The consent HTTP API: load the request, ask the domain, answer (DESIGN.md, consent 8002)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Response, current_app, request, url_for
from flask_smorest import Blueprint
from sqlalchemy.orm import Session, sessionmaker
from uuid6 import uuid7

from services.consent import domain, ledger
from services.consent.domain import Consent, GrantConsent, Grantee, RevokeConsent
from services.consent.fhir_consent import FHIR_JSON, as_fhir
from services.consent.schemas import (
    GRANT_EXAMPLE,
    QUESTION_EXAMPLE,
    AccessAnswer,
    AccessQuestion,
    ConsentCreate,
    ConsentHistory,
    ConsentPage,
    ConsentQuery,
    ConsentRead,
)
from services.consent.store import ConsentUnitOfWork
from shared.auth import Principal
from shared.consent_rules import AccessRequest
from shared.errors import NotFound
from shared.fhir import preferred
from shared.http import authorized_by, current_principal
from shared.paging import decode_cursor, encode_cursor
from shared.problems import served_as

blp = Blueprint("consent", __name__, description="Consent grants, revocations and decisions")


FHIR_CONSENT = {
    "type": "object",
    "description": "a FHIR R4 Consent, with `Accept: application/fhir+json`",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "enum": ["Consent"]}},
}


def _sessions() -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = current_app.extensions["consent"]
    return sessions


def _if_match() -> frozenset[int] | None:
    """The versions an `If-Match` header names (None when absent or `*`)."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    tags = (tag.strip().strip('"') for tag in header.split(","))
    return frozenset(int(tag) for tag in tags if re.fullmatch(r"[0-9]{1,9}", tag))


def _readable(consent_id: str) -> Consent:
    principal = current_principal()
    principal.require_scope("Consent", "r")
    with ConsentUnitOfWork(_sessions()) as uow:
        consent = uow.consents.current(consent_id)
    if consent is None:
        raise NotFound(f"no consent {consent_id}")
    domain.ensure_may_read(principal, consent)
    return consent


def _headers(consent: Consent) -> dict[str, str]:
    return {"ETag": consent.etag}


def _may_grant(principal: Principal, patient: str) -> None:
    principal.require_scope("Consent", "c")
    domain.ensure_may_grant(principal, patient)


def _may_list(principal: Principal, patient: str) -> None:
    principal.require_scope("Consent", "s")
    domain.grantees_visible_to(principal, patient)


def _may_ask(principal: Principal) -> None:
    principal.require_scope("Consent", "r")
    domain.ensure_may_ask_at_all(principal)


@blp.route("/patients/<patient>/consents", methods=["POST"])
@authorized_by(_may_grant)
@blp.arguments(ConsentCreate, example=GRANT_EXAMPLE)
@blp.response(201, ConsentRead)
def grant(body: dict[str, Any], patient: str) -> tuple[Consent, int, dict[str, str]]:
    """Grant a consent on the patient's chart."""
    principal = current_principal()
    consent = ledger.grant(
        _sessions(),
        GrantConsent(
            consent_id=str(uuid7()),
            patient=patient,
            grantee=Grantee(**body["grantee"]),
            actions=frozenset(body["actions"]),
            categories=frozenset(body["categories"]),
            security_labels=frozenset(body["security_labels"]),
            purposes=frozenset(body["purposes"]),
            start=body["period"]["start"],
            end=body["period"]["end"],
            at=ledger.now(),
            by=principal,
        ),
    )
    location = url_for("consent.read", consent_id=consent.id)
    return consent, 201, {**_headers(consent), "Location": location}


@blp.route("/consents/<consent_id>/revoke", methods=["POST"])
@blp.response(200, ConsentRead)
@blp.alt_response(409, response="CONFLICT", description="If-Match names another version")
def revoke(consent_id: str) -> tuple[Consent, int, dict[str, str]]:
    """Revoke a consent the patient granted."""
    principal = current_principal()
    principal.require_scope("Consent", "u")
    outcome = ledger.change(
        _sessions(),
        RevokeConsent(consent_id, at=ledger.now(), by=principal),
        if_match=_if_match(),
    )
    return outcome.consent, 200, _headers(outcome.consent)


@blp.route("/patients/<patient>/consents")
@authorized_by(_may_list)
@blp.arguments(ConsentQuery, location="query")
@blp.response(200, ConsentPage)
def list_consents(query: dict[str, Any], patient: str) -> dict[str, Any]:
    """List the consents on a patient's chart, newest first."""
    grantees = domain.grantees_visible_to(current_principal(), patient)
    before = decode_cursor(query["cursor"], str) if "cursor" in query else None
    limit = query["limit"]
    with ConsentUnitOfWork(_sessions()) as uow:
        found = uow.consents.of_patient(
            patient,
            statuses=[query["status"]] if "status" in query else None,
            grantees=grantees,
            before=before,
            limit=limit + 1,
        )
    page = found[:limit]
    more = len(found) > limit
    return {"items": page, "next_cursor": encode_cursor(page[-1].id) if more else None}


@blp.route("/consents/<consent_id>")
@blp.response(200, ConsentRead)
@blp.doc(**served_as({FHIR_JSON: FHIR_CONSENT}))
def read(consent_id: str) -> tuple[Consent | Response, int, dict[str, str]]:
    """Read one consent, as JSON or as a FHIR R4 Consent."""
    consent = _readable(consent_id)
    if preferred(request.headers.get("Accept"), ["application/json", FHIR_JSON]) == FHIR_JSON:
        fhir = Response(json.dumps(as_fhir(consent)), mimetype=FHIR_JSON)
        return fhir, 200, _headers(consent)
    return consent, 200, _headers(consent)


@blp.route("/consents/<consent_id>/history")
@blp.response(200, ConsentHistory)
def history(consent_id: str) -> dict[str, Any]:
    """List the events of one consent, oldest first."""
    _readable(consent_id)
    with ConsentUnitOfWork(_sessions()) as uow:
        facts = uow.consents.history(consent_id)
    return {"items": facts, "next_cursor": None}


@blp.route("/access-decisions", methods=["POST"])
@authorized_by(_may_ask)
@blp.arguments(AccessQuestion, example=QUESTION_EXAMPLE)
@blp.response(200, AccessAnswer)
def decide_access(question: dict[str, Any]) -> dict[str, Any]:
    """Decide whether a practitioner may access a kind of record, now, under consent."""
    principal = current_principal()
    practitioner = question["grantee"]["practitioner"]
    org = question["grantee"]["org"]
    if principal.role == "practitioner" and org is None:
        org = principal.org
    domain.ensure_may_ask(principal, practitioner, org)
    decision = ledger.decide_access(
        _sessions(),
        AccessRequest(
            patient=question["patient"],
            practitioner=practitioner,
            org=org,
            action=question["action"],
            category=question["category"],
            security_labels=frozenset(question["security_labels"]),
            purpose=question["purpose"],
            at=ledger.now(),
        ),
    )
    return {
        "decision": "permit" if decision.permit else "deny",
        "consents": list(decision.consent_ids),
        "reason": decision.reason,
    }
