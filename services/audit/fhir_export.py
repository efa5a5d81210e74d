"""The trail as FHIR R4 `AuditEvent`s in a `Bundle`, in the style of IHE BALP.

IHE Basic Audit Log Patterns: https://profiles.ihe.net/ITI/BALP/ — a RESTful access is
type `rest` with the interaction as subtype; the user is the requesting agent (with their
organization as a second agent); the patient and each record are entities; the purpose of
use is `purposeOfEvent`. Every resource is validated with `fhir.resources` before it leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from services.audit.domain import ChainedEntry, Entry
from shared.break_glass import BY_CODE as BREAK_GLASS_REASONS

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACTOR_SYSTEM = "urn:caretrail:actor"
ORG_SYSTEM = "urn:caretrail:organization"
RECORD_SYSTEM = "urn:caretrail:record"

# action of the trail -> (FHIR interaction, AuditEvent.action)
_INTERACTIONS = {
    "read": ("read", "R"),
    "vread": ("vread", "R"),
    "search": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "erase": ("delete", "D"),
    "grant": ("create", "C"),
    "revoke": ("update", "U"),
    "expire": ("update", "U"),
    "review": ("create", "C"),
}
_READS = ("read", "vread", "search", "export")


def _type_and_subtype(entry: Entry) -> tuple[dict[str, str], list[dict[str, str]], str]:
    if entry.action == "export":
        return {"system": DICOM, "code": "110106", "display": "Export"}, [], "R"
    if entry.action in _INTERACTIONS:
        interaction, action = _INTERACTIONS[entry.action]
        return (
            {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
            [{"system": INTERACTION, "code": interaction}],
            action,
        )
    return {"system": DICOM, "code": "110100", "display": "Application Activity"}, [], "E"


def _outcome(entry: Entry) -> tuple[str, str | None]:
    if entry.outcome == "deny":
        return "4", f"access denied: {entry.reason}" if entry.reason else "access denied"
    if entry.type.endswith("notification.failed.v1"):
        return "4", "delivery failed"
    return "0", None


def _agents(entry: Entry) -> list[dict[str, Any]]:
    sub = entry.actor.partition(":")[2]
    # A reader receives information (IRCP); anyone else authored the fact (AUT).
    participation = "IRCP" if entry.action in _READS else "AUT"
    user: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": participation}]},
        "who": {
            "identifier": {"system": ACTOR_SYSTEM, "value": entry.actor},
            "display": sub or entry.actor,
        },
        "requestor": True,
    }
    if entry.role:
        user["role"] = [{"text": entry.role}]
    if entry.purpose:
        user["purposeOfUse"] = [{"coding": [{"system": ACT_REASON, "code": entry.purpose}]}]
    agents = [user]
    if entry.org:
        agents.append(
            {
                "who": {
                    "identifier": {"system": ORG_SYSTEM, "value": entry.org},
                    "display": entry.org,
                },
                "requestor": False,
            }
        )
    return agents


def _entities(entry: Entry) -> list[dict[str, Any]]:
    patient = {
        "what": {"reference": f"Patient/{entry.patient}"},
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }
    records = [
        {
            "what": {"identifier": {"system": RECORD_SYSTEM, "value": record_id}},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }
        for record_id in entry.record_ids
    ]
    consents = [
        {
            "what": {"reference": f"Consent/{consent_id}"},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            "description": "the consent that permitted the access",
        }
        for consent_id in entry.consent_ids
    ]
    return [patient, *records, *consents]


def _purposes(entry: Entry) -> list[dict[str, Any]]:
    purposes: list[dict[str, Any]] = []
    if entry.purpose:
        purposes.append({"coding": [{"system": ACT_REASON, "code": entry.purpose}]})
    if entry.break_glass_reason is not None:
        # BTG is a v3 ActReason (not an ActCode): HAPI's $validate knows it only there.
        coding = [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]
        reason = BREAK_GLASS_REASONS.get(entry.break_glass_reason)
        if reason is not None:
            coding.append({"system": reason.system, "code": reason.code, "display": reason.display})
        # A fact of before reasons were coded gave free text: kept as the concept's text. The
        # sealed note never goes in: only records opens it.
        text = reason.display if reason is not None else entry.break_glass_reason
        purposes.append({"coding": coding, "text": text})
    return purposes


def audit_event(stored: ChainedEntry) -> dict[str, Any]:
    """One trail entry as a FHIR R4 AuditEvent (JSON)."""
    entry = stored.entry
    event_type, subtype, action = _type_and_subtype(entry)
    outcome, outcome_desc = _outcome(entry)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": entry.event_id,
        "type": event_type,
        "action": action,
        "recorded": entry.time,
        "outcome": outcome,
        "agent": _agents(entry),
        "source": {
            "site": entry.source,
            "observer": {"display": f"caretrail/{entry.source}"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(entry),
    }
    if subtype:
        resource["subtype"] = subtype
    if outcome_desc:
        resource["outcomeDesc"] = outcome_desc
    purposes = _purposes(entry)
    if purposes:
        resource["purposeOfEvent"] = purposes
    return resource


def audit_bundle(
    entries: Iterable[ChainedEntry], *, self_url: str, next_url: str | None
) -> dict[str, Any]:
    """A validated searchset Bundle of the entries' AuditEvents."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{stored.entry.event_id}",
                "resource": audit_event(stored),
                "search": {"mode": "match"},
            }
            for stored in entries
        ],
    }
    Bundle.model_validate(bundle)  # raises on a resource FHIR would refuse
    return bundle
