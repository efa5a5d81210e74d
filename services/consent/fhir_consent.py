"""A consent as a FHIR R4 `Consent` resource (https://hl7.org/fhir/R4/consent.html)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent
from pydantic import ValidationError

from services.consent.domain import FHIR_ID, Consent, Grantee
from shared.errors import InvalidInput
from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS
from shared.fhir_conformance import check_conformance

FHIR_JSON = "application/fhir+json"

_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_LOINC = "http://loinc.org"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
_RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"

# Consent.status has no "revoked" or "expired" in R4: both are "inactive".
_STATUS = {"active": "active", "revoked": "inactive", "expired": "inactive"}
# Our one action, "read", is the R4 consent action "access".
_ACTIONS = {"read": "access"}
_REFERENCE_TYPE = {"practitioner": "Practitioner", "organization": "Organization"}


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code} | ({"display": display} if display else {})
    return {"coding": [coding]}


def as_fhir(consent: Consent) -> dict[str, Any]:
    """The FHIR R4 Consent of `consent`, validated with `fhir.resources`."""
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {
            "start": consent.period.start.isoformat(),
            "end": consent.period.end.isoformat(),
        },
        "actor": [
            {
                "role": _concept(_PARTICIPATION, "IRCP", "information recipient"),
                "reference": {
                    "reference": f"{_REFERENCE_TYPE[consent.grantee.type]}/{consent.grantee.id}"
                },
            }
        ],
        "action": [_concept(_CONSENT_ACTION, _ACTIONS[a]) for a in consent.actions],
        "purpose": [{"system": _ACT_REASON, "code": p} for p in consent.purposes],
    }
    # A provision without `class` covers every kind of resource: that is what "*" means.
    if "*" not in consent.categories:
        provision["class"] = [{"system": _RESOURCE_TYPES, "code": c} for c in consent.categories]
    if consent.security_labels:
        provision["securityLabel"] = [
            {"system": _ACT_CODE, "code": label} for label in consent.security_labels
        ]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent.id,
        "meta": {"versionId": str(consent.version), "lastUpdated": consent.updated_at.isoformat()},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{consent.id}"}],
        "status": _STATUS[consent.status],
        "scope": _concept(_CONSENT_SCOPE, "patient-privacy", "Privacy Consent"),
        "category": [_concept(_LOINC, "59284-0", "Patient Consent")],
        "patient": {"reference": f"Patient/{consent.patient}"},
        "dateTime": consent.granted_at.isoformat(),
        "policyRule": _concept(_ACT_CODE, "OPTIN", "opt-in"),
        "provision": provision,
    }
    FhirConsent.model_validate(resource)
    return resource


# --- a FHIR Consent in: the terms of a grant, or what the aggregate cannot express -----------

_PURPOSES = frozenset(PURPOSES)
_LABELS = frozenset(SECURITY_LABELS)
_CATEGORIES = frozenset(CATEGORIES)
# Provision elements a caretrail consent has no place for: honouring them is impossible and
# ignoring them would grant more than the patient meant.
_INEXPRESSIBLE = ("provision", "data", "code", "dataPeriod")
# Where the aggregate's own refusals (shared.errors field names) are in a FHIR Consent.
FHIR_PATHS = {
    "patient": "Consent.patient",
    "period": "Consent.provision.period",
    "actions": "Consent.provision.action",
    "categories": "Consent.provision.class",
    "purposes": "Consent.provision.purpose",
}


@dataclass(frozen=True)
class GrantTerms:
    """What a FHIR Consent asks the aggregate to grant."""

    patient: str
    grantee: Grantee
    actions: frozenset[str]
    categories: frozenset[str]
    security_labels: frozenset[str]
    purposes: frozenset[str]
    start: datetime | None
    end: datetime


def grant_terms(resource: Any) -> GrantTerms:
    """The grant a FHIR R4 Consent means, or `InvalidInput` naming each element that caretrail's
    consent cannot express (it is an opt-in permit of `read` to one practitioner or one
    organization, for named purposes, until an end)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        raise InvalidInput(
            "the body must be a FHIR Consent",
            errors=[{"path": "resourceType", "problem": "not a Consent"}],
        )
    try:
        FhirConsent.model_validate(resource)
    except ValidationError as err:
        raise InvalidInput("the Consent is not valid FHIR R4", errors=_structure(err)) from None
    check_conformance(resource)
    reading = _Reading(resource)
    terms = reading.terms()
    if terms is None:
        raise InvalidInput(
            "caretrail cannot grant this Consent as written", errors=reading.problems
        )
    return terms


def _structure(err: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "path": ".".join(["Consent", *(str(p) for p in item["loc"])]),
            "problem": item["type"],
        }
        for item in err.errors(include_url=False, include_context=False, include_input=False)
    ]


class _Reading:
    """One pass over a Consent, gathering every problem rather than stopping at the first."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.provision: dict[str, Any] = resource.get("provision") or {}
        self.problems: list[dict[str, str]] = []

    def refuse(self, path: str, message: str) -> None:
        self.problems.append(
            {"path": f"Consent.{path}", "problem": "not-supported", "message": message}
        )

    def terms(self) -> GrantTerms | None:
        patient = self._patient()
        self._policy()
        grantee = self._grantee()
        actions = self._codes("action", {(_CONSENT_ACTION, "access"): "read"}, required=True)
        purposes = self._codings("purpose", _ACT_REASON, _PURPOSES, required=True)
        labels = self._codings("securityLabel", _ACT_CODE, _LABELS, required=False)
        categories = self._codings("class", _RESOURCE_TYPES, _CATEGORIES, required=False)
        start, end = self._period()
        for name in _INEXPRESSIBLE:
            if name in self.provision:
                self.refuse(
                    f"provision.{name}",
                    "nested provisions, data, codes and data "
                    "periods cannot be expressed; grant one consent per permit",
                )
        if self.problems or patient is None or grantee is None or end is None:
            return None
        return GrantTerms(
            patient, grantee, actions, categories or frozenset({"*"}), labels, purposes, start, end
        )

    def _patient(self) -> str | None:
        reference = (self.resource.get("patient") or {}).get("reference", "")
        if not reference.startswith("Patient/"):
            self.refuse("patient", "name the patient as Patient/{id}")
            return None
        return str(reference.removeprefix("Patient/"))

    def _policy(self) -> None:
        if self.resource.get("status") != "active":
            self.refuse("status", "only an active consent can be granted")
        scope = self.resource.get("scope")
        if scope and not _has_coding(scope, _CONSENT_SCOPE, "patient-privacy"):
            self.refuse("scope", "caretrail consents are patient-privacy consents")
        rule = self.resource.get("policyRule")
        if rule and not _has_coding(rule, _ACT_CODE, "OPTIN"):
            self.refuse("policyRule", "caretrail consents are opt-in (v3-ActCode OPTIN)")
        if self.provision.get("type") != "permit":
            self.refuse("provision.type", "caretrail consents permit; a deny is a revocation")

    def _grantee(self) -> Grantee | None:
        actors = self.provision.get("actor") or []
        if len(actors) != 1:
            self.refuse("provision.actor", "name exactly one practitioner or organization")
            return None
        role = actors[0].get("role")
        if role and not _has_coding(role, _PARTICIPATION, "IRCP"):
            self.refuse("provision.actor[0].role", "the grantee receives information (IRCP)")
        kind, _, grantee_id = str(actors[0].get("reference", {}).get("reference", "")).partition(
            "/"
        )
        kinds = {v: k for k, v in _REFERENCE_TYPE.items()}
        if kind not in kinds or not re.match(FHIR_ID, grantee_id):
            self.refuse("provision.actor[0].reference", "a Practitioner/{id} or Organization/{id}")
            return None
        return Grantee(kinds[kind], grantee_id)

    def _codes(
        self, element: str, known: dict[tuple[str, str], str], *, required: bool
    ) -> frozenset[str]:
        found: set[str] = set()
        for index, concept in enumerate(self.provision.get(element) or []):
            codings = [(c.get("system"), c.get("code")) for c in concept.get("coding", [])]
            matched = [known[c] for c in codings if c in known]
            if not matched:
                self.refuse(f"provision.{element}[{index}]", "only consentaction access (read)")
            found.update(matched)
        if required and not self.provision.get(element):
            self.refuse(f"provision.{element}", "name what is permitted")
        return frozenset(found)

    def _codings(
        self, element: str, system: str, known: frozenset[str], *, required: bool
    ) -> frozenset[str]:
        found: set[str] = set()
        for index, coding in enumerate(self.provision.get(element) or []):
            if coding.get("system") != system or coding.get("code") not in known:
                self.refuse(
                    f"provision.{element}[{index}]",
                    f"one of {', '.join(sorted(known))} from {system}",
                )
            else:
                found.add(coding["code"])
        if required and not self.provision.get(element):
            self.refuse(f"provision.{element}", f"name at least one of {', '.join(sorted(known))}")
        return frozenset(found)

    def _period(self) -> tuple[datetime | None, datetime | None]:
        period = self.provision.get("period") or {}
        start, end = _instant(period.get("start")), _instant(period.get("end"))
        if end is None:
            self.refuse(
                "provision.period.end", "a consent ends: give the end as a dateTime with a zone"
            )
        if period.get("start") and start is None:
            self.refuse("provision.period.start", "a dateTime with a time zone")
        return start, end


def _has_coding(concept: dict[str, Any], system: str, code: str) -> bool:
    return any(
        c.get("system") == system and c.get("code") == code for c in concept.get("coding", [])
    )


def _instant(text: Any) -> datetime | None:
    """A FHIR dateTime to the second or finer, with its zone; anything vaguer is None."""
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
