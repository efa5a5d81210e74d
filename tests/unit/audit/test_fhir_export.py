"""The trail as FHIR AuditEvents, IHE BALP style, validated by fhir.resources."""

import json

from fhir.resources.R4B.auditevent import AuditEvent

from services.audit.domain import chained, entry_of
from services.audit.fhir_export import audit_bundle, audit_event
from shared.break_glass import BY_CODE
from shared.inbox import Origin
from tests.unit.audit.facts import access, consent_granted


def as_audit_event(event) -> dict:
    resource = audit_event(chained(entry_of(event, Origin("caretrail.access.v1", 0, 7)), None))
    AuditEvent.model_validate(resource)
    return resource


def test_a_read_names_the_user_their_org_the_patient_the_records_and_the_purpose():
    event = access(
        "p-1",
        actor="practitioner:dr-lee",
        org="org-a",
        record_ids=("r1", "r2"),
        consent_ids=("c-1",),
    )

    resource = as_audit_event(event)

    assert resource["type"]["code"] == "rest" and resource["subtype"][0]["code"] == "read"
    assert (resource["action"], resource["outcome"]) == ("R", "0")
    user, org = resource["agent"]
    assert user["requestor"] and user["who"]["identifier"]["value"] == "practitioner:dr-lee"
    assert org["who"]["identifier"]["value"] == "org-a"
    entities = [
        e["what"].get("reference") or e["what"]["identifier"]["value"] for e in resource["entity"]
    ]
    assert entities == ["Patient/p-1", "r1", "r2", "Consent/c-1"]
    assert resource["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"


def test_a_denied_read_is_a_failed_outcome_and_break_glass_is_a_btg_purpose():
    denied = as_audit_event(access("p-1", actor="practitioner:dr-x", outcome="deny"))
    emergency = as_audit_event(
        access(
            "p-1",
            actor="practitioner:dr-y",
            purpose="ETREAT",
            break_glass_reason="OVRER",
            break_glass_note="key-1.bm9uY2U.c2VhbGVk",
        )
    )
    before_codes = as_audit_event(
        access("p-1", actor="practitioner:dr-y", purpose="ETREAT", break_glass_reason="ER")
    )

    assert denied["outcome"] == "4"
    assert denied["outcomeDesc"] == "access denied: no consent covers it"
    codes = [
        (c["coding"][0]["system"], c["coding"][0]["code"]) for c in emergency["purposeOfEvent"]
    ]
    act_reason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    assert codes == [(act_reason, "ETREAT"), (act_reason, "BTG")]
    btg = emergency["purposeOfEvent"][1]
    assert btg["coding"][1] == {
        "system": act_reason,
        "code": "OVRER",
        "display": BY_CODE["OVRER"].display,
    }
    assert btg["text"] == BY_CODE["OVRER"].display
    assert "c2VhbGVk" not in json.dumps(emergency)  # the sealed note stays in the trail
    # A fact of before reasons were coded keeps its free text as the concept's text.
    assert before_codes["purposeOfEvent"][1] == {"coding": [btg["coding"][0]], "text": "ER"}


def test_a_bundle_of_mixed_facts_validates():
    facts = [
        access("p-1", actor="practitioner:dr-lee"),
        consent_granted("p-1"),
        access("p-1", actor="practitioner:dr-lee", action="export"),
    ]
    entries = [chained(entry_of(e, Origin("t", 0, n)), None) for n, e in enumerate(facts)]

    bundle = audit_bundle(entries, self_url="http://audit/audit/events", next_url=None)

    assert [e["resource"]["action"] for e in bundle["entry"]] == ["R", "C", "R"]
