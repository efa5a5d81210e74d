"""A consent as a FHIR R4 `Consent` resource (https://hl7.org/fhir/R4/consent.html)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.consent import Consent as FhirConsent

from services.consent.domain import Consent

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
