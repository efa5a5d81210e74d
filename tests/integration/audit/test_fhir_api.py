"""The trail through the FHIR base: AuditEvent search, paged, for compliance and the patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from tests.conftest import bearer
from tests.unit.audit.facts import access, consent_granted

FHIR = {"Accept": "application/fhir+json"}
DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def search(client, headers, **params):
    """Every AuditEvent a search finds, following `next` to the end; and the pages' sizes."""
    found, sizes, url, query = [], [], "/fhir/AuditEvent", params
    while url:
        response = client.get(url, query_string=query, headers=headers | FHIR)
        assert response.status_code == 200, response.json
        bundle = Bundle.model_validate(response.json)
        found += [entry.resource for entry in bundle.entry or []]
        sizes.append(len(bundle.entry or []))
        links = {link.relation: link.url for link in bundle.link}
        assert links["self"].startswith("http://localhost/fhir/AuditEvent")
        url, query = links.get("next", "").replace("http://localhost", ""), None
    return found, sizes


def test_compliance_searches_auditevents_by_patient_agent_date_outcome_and_type(
    client, seed, token
):
    compliance = bearer(token("compliance", "officer-1"))
    p1, p2 = f"p-{uuid4()}", f"p-{uuid4()}"
    seed(
        access(p1, actor="practitioner:dr-lee", org="org-a", time=DAY),
        access(p1, actor="practitioner:dr-x", outcome="deny", time=DAY + timedelta(days=1)),
        access(p1, actor="practitioner:dr-lee", action="export", time=DAY + timedelta(days=2)),
        consent_granted(p1),
        access(p2, actor="practitioner:dr-lee", time=DAY),
    )

    everything, sizes = search(client, compliance, patient=f"Patient/{p1}", _count=2)
    denied, _ = search(client, compliance, patient=p1, outcome="4")
    by_lee, _ = search(client, compliance, agent="Practitioner/dr-lee", patient=p1)
    exports, _ = search(client, compliance, patient=p1, type="110106")
    reads, _ = search(client, compliance, patient=p1, type="read")
    on_day, _ = search(client, compliance, patient=p1, date="2026-03-02")
    after, _ = search(client, compliance, patient=p1, date=["gt2026-03-01", "lt2026-03-03"])

    assert len(everything) == 4 and sizes == [2, 2]
    assert [e.agent[0].who.identifier.value for e in denied] == ["practitioner:dr-x"]
    assert {e.entity[0].what.reference for e in everything} == {f"Patient/{p1}"}
    assert len(by_lee) == 2 and len(exports) == 1
    assert sorted(e.outcome for e in reads) == ["0", "4"]  # a denied read is a read too
    assert [e.outcome for e in on_day] == ["4"]
    assert [e.outcome for e in after] == ["4"]


def test_a_patient_searches_only_their_own_trail(client, seed, token):
    alice, bob = f"p-{uuid4()}", f"p-{uuid4()}"
    seed(access(alice, actor="practitioner:dr-lee"), access(bob, actor="practitioner:dr-lee"))
    as_alice = bearer(token("patient", alice, patient=alice))

    own, _ = search(client, as_alice)
    other = client.get(f"/fhir/AuditEvent?patient={bob}", headers=as_alice | FHIR)
    practitioner = client.get(
        "/fhir/AuditEvent", headers=bearer(token("practitioner", "dr-lee", org="org-a")) | FHIR
    )
    unknown = client.get("/fhir/AuditEvent?entity-name=x", headers=as_alice | FHIR)

    assert {e.entity[0].what.reference for e in own} == {f"Patient/{alice}"}
    assert (other.status_code, practitioner.status_code, unknown.status_code) == (403, 403, 400)
    for answer in (other, practitioner, unknown):
        assert answer.json["resourceType"] == "OperationOutcome"


def test_the_base_describes_itself(client):
    metadata = client.get("/fhir/metadata", headers=FHIR)
    smart = client.get("/fhir/.well-known/smart-configuration")

    statement = CapabilityStatement.model_validate(metadata.json)
    resource = statement.rest[0].resource[0]
    assert (resource.type, [i.code for i in resource.interaction]) == (
        "AuditEvent",
        ["search-type"],
    )
    assert {p.name for p in resource.searchParam} == {"patient", "agent", "date", "outcome", "type"}
    assert "permission-v2" in smart.json["capabilities"]
