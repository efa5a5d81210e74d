"""Consents through the FHIR base: the native grant's aggregate and event, FHIR in and out."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent as FhirConsent
from fhir.resources.R4B.operationoutcome import OperationOutcome

from tests.integration.consent.conftest import ConsentService
from tests.unit.consent.test_fhir_grant import a_consent

FHIR = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


def consent_for(patient: str, grantee: str = "Organization/org-b") -> dict:
    resource = a_consent()
    resource["patient"] = {"reference": f"Patient/{patient}"}
    resource["provision"]["actor"][0]["reference"] = {"reference": grantee}
    return resource


def test_a_fhir_consent_is_granted_as_the_native_grant_and_read_back(service: ConsentService):
    patient = service.new_patient()
    headers = patient.headers | FHIR

    created = service.client.post("/fhir/Consent", json=consent_for(patient.id), headers=headers)

    assert created.status_code == 201, created.get_json()
    consent = FhirConsent.model_validate(created.get_json())
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"].endswith(f"/fhir/Consent/{consent.id}/_history/1")
    native = service.client.get(f"/consents/{consent.id}", headers=patient.headers).get_json()
    assert native["grantee"] == {"type": "organization", "id": "org-b"}
    assert (native["categories"], native["purposes"], native["status"]) == (
        ["*"],
        ["TREAT"],
        "active",
    )
    history = service.client.get(f"/consents/{consent.id}/history", headers=patient.headers)
    assert [i["type"] for i in history.get_json()["items"]] == ["caretrail.consent.granted.v1"]
    read = service.client.get(f"/fhir/Consent/{consent.id}", headers=headers)
    assert read.status_code == 200 and read.get_json() == created.get_json()


def test_what_the_aggregate_cannot_express_is_a_422_outcome_and_writes_nothing(
    service: ConsentService,
):
    patient = service.new_patient()
    deny = consent_for(patient.id)
    deny["provision"]["type"] = "deny"
    ended = consent_for(patient.id)
    ended["provision"]["period"]["end"] = "2001-01-01T00:00:00Z"
    before = service.counts()

    for resource, element in (
        (deny, "Consent.provision.type"),
        (ended, "Consent.provision.period"),
    ):
        refused = service.client.post(
            "/fhir/Consent", json=resource, headers=patient.headers | FHIR
        )

        assert refused.status_code == 422
        outcome = OperationOutcome.model_validate(refused.get_json())
        assert [element] in [issue.expression for issue in outcome.issue]
    assert service.counts() == before


def test_a_consent_on_another_chart_is_refused_as_an_outcome(service: ConsentService):
    alice, mallory = service.new_patient(), service.new_patient()
    headers = mallory.headers | FHIR
    granted = service.grant(alice)

    written = service.client.post("/fhir/Consent", json=consent_for(alice.id), headers=headers)
    read = service.client.get(f"/fhir/Consent/{granted['id']}", headers=headers)
    missing = service.client.get("/fhir/Consent/no-such-consent", headers=headers)

    assert (written.status_code, read.status_code, missing.status_code) == (403, 403, 404)
    for answer in (written, read, missing):
        assert answer.get_json()["resourceType"] == "OperationOutcome"


def test_a_search_pages_to_the_end_and_filters_by_fhir_status(service: ConsentService):
    patient = service.new_patient()
    ids = [service.grant(patient)["id"] for _ in range(3)]
    service.client.post(f"/consents/{ids[0]}/revoke", headers=patient.headers)

    seen, url = [], f"/fhir/Consent?patient=Patient/{patient.id}&status=active&_count=1"
    while url:
        page = service.client.get(url, headers=patient.headers | FHIR)
        assert page.status_code == 200, page.get_json()
        bundle = Bundle.model_validate(page.get_json())
        seen += [entry.resource.id for entry in bundle.entry or []]
        links = {link.relation: link.url for link in bundle.link}
        assert "self" in links
        url = links.get("next", "").replace("http://localhost", "")
    inactive = service.client.get(
        f"/fhir/Consent?patient={patient.id}&status=inactive", headers=patient.headers | FHIR
    ).get_json()
    unknown = service.client.get(
        f"/fhir/Consent?patient={patient.id}&grantee=x", headers=patient.headers | FHIR
    )

    assert seen == [ids[2], ids[1]]
    assert [e["resource"]["id"] for e in inactive["entry"]] == [ids[0]]
    assert unknown.status_code == 400
    assert unknown.get_json()["resourceType"] == "OperationOutcome"


def test_the_base_describes_itself(service: ConsentService):
    metadata = service.client.get("/fhir/metadata", headers=FHIR)
    smart = service.client.get("/fhir/.well-known/smart-configuration")

    statement = CapabilityStatement.model_validate(metadata.get_json())
    resource = statement.rest[0].resource[0]
    assert resource.type == "Consent"
    assert {i.code for i in resource.interaction} == {"read", "create", "search-type"}
    assert "permission-v2" in smart.get_json()["capabilities"]
