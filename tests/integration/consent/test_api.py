"""The consent API against real databases and the real broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.consent import Consent as FhirConsent

from shared.events import TOPIC_CONSENT
from shared.outbox import wait_until_published
from tests.integration.consent.conftest import ConsentService, a_grant


def test_grant_then_revoke_shows_in_history_and_on_kafka(service: ConsentService, kafka_tap):
    tap = kafka_tap(TOPIC_CONSENT)
    patient = service.new_patient()

    granted = service.grant(patient, security_labels=["PSY"])
    assert (granted["status"], granted["version"]) == ("active", 1)
    revoked = service.client.post(
        f"/consents/{granted['id']}/revoke", headers=patient.headers | {"If-Match": '"1"'}
    )
    assert revoked.status_code == 200
    assert (revoked.get_json()["status"], revoked.get_json()["version"]) == ("revoked", 2)
    assert revoked.headers["ETag"] == '"2"'

    history = service.client.get(f"/consents/{granted['id']}/history", headers=patient.headers)
    assert history.status_code == 200
    items = history.get_json()["items"]
    assert [i["type"] for i in items] == [
        "caretrail.consent.granted.v1",
        "caretrail.consent.revoked.v1",
    ]
    assert {i["actor"] for i in items} == {f"patient:{patient.id}"}
    assert items[0]["data"]["security_labels"] == ["PSY"]

    wait_until_published(service.relay)
    on_kafka = tap.events(2, where=lambda e: e.subject == patient.id, settle_seconds=1.0)
    assert [e.id for e in on_kafka] == [i["id"] for i in items]
    assert [e.data["version"] for e in on_kafka] == [1, 2]


def test_revoking_twice_answers_the_same_state_and_emits_nothing_new(service: ConsentService):
    patient = service.new_patient()
    granted = service.grant(patient)
    first = service.client.post(f"/consents/{granted['id']}/revoke", headers=patient.headers)
    # A retry naming the version it saw before: the change is already made, so 200 (RFC 9110).
    again = service.client.post(
        f"/consents/{granted['id']}/revoke", headers=patient.headers | {"If-Match": '"1"'}
    )

    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert service.counts() == (2, 1)


def test_a_stale_if_match_version_is_a_conflict_and_changes_nothing(service: ConsentService):
    patient = service.new_patient()
    granted = service.grant(patient)

    response = service.client.post(
        f"/consents/{granted['id']}/revoke", headers=patient.headers | {"If-Match": '"7"'}
    )

    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    current = service.client.get(f"/consents/{granted['id']}", headers=patient.headers)
    assert current.get_json()["status"] == "active"
    assert current.headers["ETag"] == '"1"'


def test_only_the_patient_or_an_admin_revokes(service: ConsentService):
    patient = service.new_patient()
    granted = service.grant(patient)
    other = service.new_patient()
    grantee = service.as_role("practitioner", "dr-lee", org="org-a")

    for headers in (other.headers, grantee):
        response = service.client.post(f"/consents/{granted['id']}/revoke", headers=headers)
        assert response.status_code == 403
    admin = service.as_role("admin", "ops")
    response = service.client.post(f"/consents/{granted['id']}/revoke", headers=admin)
    assert response.get_json()["status"] == "revoked"
    assert service.counts() == (2, 1)


def test_revoking_an_unknown_consent_is_not_found(service: ConsentService):
    patient = service.new_patient()
    response = service.client.post(f"/consents/{uuid.uuid4()}/revoke", headers=patient.headers)
    assert response.status_code == 404


def test_an_admin_grants_on_any_chart(service: ConsentService):
    patient = service.new_patient()
    admin = service.as_role("admin", "ops")
    response = service.client.post(
        f"/patients/{patient.id}/consents", json=a_grant(), headers=admin
    )
    assert response.status_code == 201
    assert response.headers["Location"].endswith(f"/consents/{response.get_json()['id']}")


def test_the_list_filters_by_status_and_pages_with_a_cursor(service: ConsentService):
    patient = service.new_patient()
    ids = [service.grant(patient)["id"] for _ in range(5)]
    service.client.post(f"/consents/{ids[0]}/revoke", headers=patient.headers)

    seen: list[str] = []
    query: dict[str, str | int] = {"status": "active", "limit": 2}
    while True:
        page = service.client.get(
            f"/patients/{patient.id}/consents", query_string=query, headers=patient.headers
        ).get_json()
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        if not page["next_cursor"]:
            break
        query["cursor"] = page["next_cursor"]

    assert seen == list(reversed(ids[1:]))  # newest first, the revoked one left out
    revoked = service.client.get(
        f"/patients/{patient.id}/consents?status=revoked", headers=patient.headers
    ).get_json()
    assert [c["id"] for c in revoked["items"]] == [ids[0]]


def test_a_practitioner_reads_only_the_consents_naming_them_or_their_org(
    service: ConsentService,
):
    patient = service.new_patient()
    to_them = service.grant(patient, grantee={"type": "practitioner", "id": "dr-lee"})
    to_org = service.grant(patient, grantee={"type": "organization", "id": "org-a"})
    to_other = service.grant(patient, grantee={"type": "practitioner", "id": "dr-who"})
    dr_lee = service.as_role("practitioner", "dr-lee", org="org-a")

    listed = service.client.get(f"/patients/{patient.id}/consents", headers=dr_lee).get_json()
    assert {c["id"] for c in listed["items"]} == {to_them["id"], to_org["id"]}
    assert service.client.get(f"/consents/{to_org['id']}", headers=dr_lee).status_code == 200
    assert service.client.get(f"/consents/{to_other['id']}", headers=dr_lee).status_code == 403
    stranger = service.new_patient()
    for url in (f"/consents/{to_them['id']}", f"/patients/{patient.id}/consents"):
        assert service.client.get(url, headers=stranger.headers).status_code == 403
    compliance = service.as_role("compliance", "cora")
    assert service.client.get(f"/consents/{to_them['id']}", headers=compliance).status_code == 403


@pytest.mark.parametrize("categories", [["Observation", "Condition"], ["*"]])
def test_a_consent_reads_as_a_valid_fhir_r4_consent(service: ConsentService, categories):
    patient = service.new_patient()
    granted = service.grant(
        patient,
        grantee={"type": "organization", "id": "org-a"},
        categories=categories,
        security_labels=["HIV", "PSY"],
        purposes=["TREAT", "ETREAT"],
    )

    response = service.client.get(
        f"/consents/{granted['id']}", headers=patient.headers | {"Accept": "application/fhir+json"}
    )

    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    resource = FhirConsent.model_validate(response.get_json())
    assert resource.status == "active"
    assert resource.patient.reference == f"Patient/{patient.id}"
    provision = resource.provision
    assert provision.type == "permit"
    assert provision.actor[0].reference.reference == "Organization/org-a"
    assert provision.actor[0].role.coding[0].code == "IRCP"
    assert provision.action[0].coding[0].code == "access"
    assert sorted(s.code for s in provision.securityLabel) == ["HIV", "PSY"]
    assert sorted(p.code for p in provision.purpose) == ["ETREAT", "TREAT"]
    assert provision.period.end is not None
    classes = sorted(c.code for c in provision.class_fhir or [])
    assert classes == ([] if categories == ["*"] else ["Condition", "Observation"])

    service.client.post(f"/consents/{granted['id']}/revoke", headers=patient.headers)
    after = service.client.get(
        f"/consents/{granted['id']}", headers=patient.headers | {"Accept": "application/fhir+json"}
    )
    assert FhirConsent.model_validate(after.get_json()).status == "inactive"


def test_a_granted_consent_permits_its_grantee_and_denies_with_a_reason(
    service: ConsentService,
):
    patient = service.new_patient()
    granted = service.grant(patient, grantee={"type": "organization", "id": "org-a"})
    dr_lee = service.as_role("practitioner", "dr-lee", org="org-a")
    question = {
        "patient": patient.id,
        "grantee": {"practitioner": "dr-lee"},
        "action": "read",
        "category": "Observation",
        "purpose": "TREAT",
    }

    permit = service.client.post("/access-decisions", json=question, headers=dr_lee)
    sensitive = service.client.post(
        "/access-decisions", json=question | {"security_labels": ["HIV"]}, headers=dr_lee
    )

    assert permit.status_code == 200
    assert permit.get_json() == {"decision": "permit", "consents": [granted["id"]], "reason": None}
    assert sensitive.get_json()["decision"] == "deny"
    assert "HIV" in sensitive.get_json()["reason"]

    service.client.post(f"/consents/{granted['id']}/revoke", headers=patient.headers)
    after = service.client.post("/access-decisions", json=question, headers=dr_lee).get_json()
    assert after["decision"] == "deny"
    assert "revoked" in after["reason"]


def test_practitioners_ask_about_themselves_only_and_admins_about_anyone(
    service: ConsentService,
):
    patient = service.new_patient()
    service.grant(patient, grantee={"type": "practitioner", "id": "dr-who"})
    question = {
        "patient": patient.id,
        "grantee": {"practitioner": "dr-who", "org": "org-b"},
        "action": "read",
        "category": "Observation",
        "purpose": "TREAT",
    }
    dr_lee = service.as_role("practitioner", "dr-lee", org="org-a")
    dr_who_elsewhere = service.as_role("practitioner", "dr-who", org="org-a")
    admin = service.as_role("admin", "records-service")

    for refused in (dr_lee, dr_who_elsewhere, patient.headers):
        response = service.client.post("/access-decisions", json=question, headers=refused)
        assert response.status_code == 403
    answer = service.client.post("/access-decisions", json=question, headers=admin)
    assert answer.get_json()["decision"] == "permit"


def test_a_consent_whose_period_ended_never_permits_even_before_it_expires(
    service: ConsentService,
):
    patient = service.new_patient()
    now = datetime.now(UTC)
    ends_soon = {"start": now.isoformat(), "end": (now + timedelta(seconds=1)).isoformat()}
    service.grant(patient, period=ends_soon)
    admin = service.as_role("admin", "ops")
    question = {
        "patient": patient.id,
        "grantee": {"practitioner": "dr-lee"},
        "action": "read",
        "category": "Observation",
        "purpose": "TREAT",
    }
    assert (
        service.client.post("/access-decisions", json=question, headers=admin).get_json()[
            "decision"
        ]
        == "permit"
    )

    time.sleep(max(0.0, (now + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))
    answer = service.client.post("/access-decisions", json=question, headers=admin).get_json()

    assert answer["decision"] == "deny"
    assert "expired" in answer["reason"]
    listed = service.client.get(f"/patients/{patient.id}/consents", headers=patient.headers)
    assert listed.get_json()["items"][0]["status"] == "active"  # no expiry job ran here
