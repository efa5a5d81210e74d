"""records' FHIR R4 base, /fhir: the native API's chart, in FHIR's words and answers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from shared.events import CATEGORIES, TOPIC_ACCESS
from tests.conftest import bearer
from tests.integration.records.support import consent_granted

FHIR = "application/fhir+json"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the FHIR base adds no SQL of its own but two lookups, which
    test_fhir_clients.py runs on PostgreSQL too (and keeps the CI budget)."""
    return sqlite_url


def lab(
    patient: str,
    code: str = "4548-4",
    *,
    when: str = "2024-03-01",
    kind: str = "laboratory",
    value: str = "6.10",
) -> bytes:
    """An Observation as a client sends it, its decimal written as the client wrote it."""
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    return (
        '{"resourceType":"Observation","status":"final",'
        f'"category":[{{"coding":[{{"system":"{system}","code":"{kind}"}}]}}],'
        f'"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},'
        f'"subject":{{"reference":"Patient/{patient}"}},"effectiveDateTime":"{when}",'
        f'"valueQuantity":{{"value":{value},"unit":"%"}}}}'
    ).encode()


def post(records: Any, headers: dict[str, str], body: bytes, kind: str = "Observation") -> Any:
    return records.client.post(
        f"/fhir/{kind}", data=body, headers={**headers, "Content-Type": FHIR}
    )


def valid(resource: dict[str, Any]) -> Any:
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_metadata_is_a_capability_statement_of_every_chart_type(records):
    response = records.client.get("/fhir/metadata")

    assert response.status_code == 200
    assert response.mimetype == FHIR
    statement = CapabilityStatement.model_validate(response.json)
    rest = statement.rest[0]
    assert {r.type for r in rest.resource} == set(CATEGORIES)
    observation = next(r for r in rest.resource if r.type == "Observation")
    assert {"patient", "code", "category", "date", "_lastUpdated", "_id"} <= {
        p.name for p in observation.searchParam
    }
    assert rest.security.service[0].coding[0].code == "SMART-on-FHIR"
    patient = next(r for r in rest.resource if r.type == "Patient")
    assert patient.operation[0].name == "everything"


def test_smart_discovery_names_the_issuer_and_what_is_enforced(records):
    document = records.client.get("/fhir/.well-known/smart-configuration").json

    assert document["issuer"] == "caretrail-local"
    assert "permission-v2" in document["capabilities"]
    assert "patient/Observation.rs" in document["scopes_supported"]


def test_a_created_resource_reads_back_exactly_as_sent_on_both_apis(records, token, kafka_tap):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    body = lab(patient, value="0.1234567890123456789", when="2024-03-01T09:30:00.120+02:00")

    created = post(records, author, body)

    assert created.status_code == 201
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Last-Modified"].endswith("GMT")
    location = created.headers["Location"]
    rid = created.json["id"]
    assert location.endswith(f"/fhir/Observation/{rid}/_history/1")
    read = records.client.get(f"/fhir/Observation/{rid}", headers=author)
    assert read.status_code == 200
    raw = read.get_data()
    assert b'"value":0.1234567890123456789' in raw
    assert b'"effectiveDateTime":"2024-03-01T09:30:00.120+02:00"' in raw
    valid(read.json)
    native = records.client.get(f"/patients/{patient}/records/{rid}", headers=author)
    assert b'"value":0.1234567890123456789' in native.get_data()
    records.publish()
    events = access.events(2, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [(e.data["action"], e.data["record_ids"]) for e in events] == [("read", [rid])] * 2


def test_a_patient_writes_phr_and_the_chart_patient_is_patient_pid(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))

    created = post(
        records,
        me,
        json.dumps({"resourceType": "Patient", "gender": "female"}).encode(),
        "Patient",
    )
    read = records.client.get(f"/fhir/Patient/{patient}", headers=me)

    assert created.status_code == 201
    assert created.json["id"] == patient
    assert read.json["id"] == patient
    found = records.client.get(f"/fhir/Patient?_id={patient}", headers=me).json
    assert [e["fullUrl"] for e in found["entry"]] == [f"http://localhost/fhir/Patient/{patient}"]
    native = records.client.get(f"/patients/{patient}/records", headers=me).json
    assert native["items"][0]["source"] == "phr"


def test_an_update_needs_the_current_version_and_prefer_minimal_answers_no_body(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    rid = post(records, author, lab(patient)).json["id"]
    changed = {**json.loads(lab(patient, value="7.0")), "id": rid}
    headers = {**author, "Content-Type": FHIR}

    updated = records.client.put(
        f"/fhir/Observation/{rid}",
        json=changed,
        headers={**headers, "If-Match": 'W/"1"', "Prefer": "return=minimal"},
    )
    stale = records.client.put(
        f"/fhir/Observation/{rid}", json=changed, headers={**headers, "If-Match": 'W/"1"'}
    )

    assert (updated.status_code, updated.get_data()) == (200, b"")
    assert updated.headers["ETag"] == 'W/"2"'
    assert stale.status_code == 412
    OperationOutcome.model_validate(stale.json)
    first = records.client.get(f"/fhir/Observation/{rid}/_history/1", headers=author).json
    assert first["meta"]["versionId"] == "1"
    history = Bundle.model_validate(
        records.client.get(f"/fhir/Observation/{rid}/_history", headers=author).json
    )
    assert history.type == "history"
    assert [e.request.method for e in history.entry] == ["PUT", "POST"]


def test_withheld_resources_are_absent_and_counted_nowhere(records, token, kafka_tap):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    shared_id = post(records, author, lab(patient)).json["id"]
    sensitive = json.loads(lab(patient, "44249-1"))
    sensitive["meta"] = {"security": [{"code": "PSY"}]}
    post(records, author, json.dumps(sensitive).encode())
    records.project(consent_granted(patient, ("organization", "org-b"), categories=["Observation"]))
    reader = bearer(token("practitioner", "dr-kim", org="org-b"))

    response = records.client.get(f"/fhir/Observation?patient=Patient/{patient}", headers=reader)

    bundle = Bundle.model_validate(response.json)
    assert [e.resource.id for e in bundle.entry] == [shared_id]
    assert bundle.total == 1
    assert "44249-1" not in response.get_data(as_text=True)
    assert [link.relation for link in bundle.link] == ["self"]
    records.publish()
    (event,) = access.events(1, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert (event.data["action"], event.data["record_ids"]) == ("search", [shared_id])


def test_search_by_code_category_date_pages_to_the_end_in_date_order(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    days = ["2024-01-05", "2024-03-01", "2024-02-10", "2023-12-31"]
    ids = {d: post(records, author, lab(patient, when=d)).json["id"] for d in days}
    vital = post(records, author, lab(patient, "8867-4", kind="vital-signs")).json["id"]
    base = f"/fhir/Observation?subject={patient}"

    def ids_of(url: str) -> list[str]:
        found, seen = url, []
        while found:
            bundle = records.client.get(found, headers=author).json
            Bundle.model_validate(bundle)
            seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
            found = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
        return seen

    assert ids_of(f"{base}&_sort=-date&_count=1&category={LAB}") == [
        ids[d] for d in sorted(days, reverse=True)
    ]
    assert ids_of(f"{base}&date=ge2024-01-01&date=lt2024-03&code=http://loinc.org|4548-4") == [
        ids["2024-02-10"],
        ids["2024-01-05"],
    ]
    assert ids_of(f"{base}&code=8867-4,nothing") == [vital]
    assert ids_of(f"{base}&_id={vital}&_count=2") == [vital]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(ids_of(f"{base}&_lastUpdated=gt{yesterday}")) == 5
    assert ids_of(f"{base}&_lastUpdated=lt{yesterday}") == []


@pytest.mark.parametrize(
    "query", ["color=red", "code:text=x", "date=sa2024", "_sort=status", "patient.name=x"]
)
def test_a_search_parameter_not_served_is_a_400_outcome_unless_lenient(records, token, query):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))

    strict = records.client.get(f"/fhir/Observation?patient={patient}&{query}", headers=me)

    assert strict.status_code == 400
    OperationOutcome.model_validate(strict.json)
    if query in ("color=red", "_sort=status"):
        lenient = records.client.get(
            f"/fhir/Observation?patient={patient}&{query}",
            headers={**me, "Prefer": "handling=lenient"},
        )
        assert lenient.status_code == 200


def test_everything_pages_by_type_and_since_and_its_urls_resolve(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    post(records, me, json.dumps({"resourceType": "Patient"}).encode(), "Patient")
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        post(records, me, lab(patient, when=day))
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"}}
    post(records, me, json.dumps(condition).encode(), "Condition")

    first = records.client.get(
        f"/fhir/Patient/{patient}/$everything?_type=Observation,Patient&_count=2", headers=me
    ).json
    Bundle.model_validate(first)
    links = {x["relation"]: x["url"] for x in first["link"]}
    second = records.client.get(links["next"], headers=me).json

    assert links["self"].endswith("_count=2")
    kinds = [e["resource"]["resourceType"] for e in first["entry"] + second["entry"]]
    assert sorted(kinds) == ["Observation"] * 3 + ["Patient"]
    for entry in first["entry"] + second["entry"]:
        resolved = records.client.get(entry["fullUrl"].removeprefix("http://localhost"), headers=me)
        assert resolved.json == entry["resource"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    since = records.client.get(
        f"/fhir/Patient/{patient}/$everything?_since={later.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        headers=me,
    ).json
    assert since["total"] == 0


def test_entered_in_error_shows_in_the_resources_own_status(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    rid = post(records, author, lab(patient)).json["id"]
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient}"},
    }
    cid = post(records, author, json.dumps(condition).encode(), "Condition").json["id"]
    for record_id in (rid, cid):
        marked = records.client.post(
            f"/patients/{patient}/records/{record_id}/entered-in-error", headers=author
        )
        assert marked.status_code == 200

    observation = records.client.get(f"/fhir/Observation/{rid}", headers=author).json
    marked_condition = records.client.get(f"/fhir/Condition/{cid}", headers=author).json

    assert observation["status"] == "entered-in-error"
    assert marked_condition["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in marked_condition
    valid(observation)
    valid(marked_condition)


def test_errors_are_outcomes_and_accept_is_read_as_a_media_type(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    rid = post(records, author, lab(patient)).json["id"]
    other = bearer(token("practitioner", "dr-kim", org="org-b"))

    forbidden = records.client.get(f"/fhir/Observation/{rid}", headers=other)
    missing = records.client.get(f"/fhir/Condition/{rid}", headers=author)
    anonymous = records.client.get(f"/fhir/Observation/{rid}")
    unknown_type = records.client.get("/fhir/Spaceship/1", headers=author)
    xml = records.client.get(
        f"/fhir/Observation/{rid}", headers={**author, "Accept": "application/fhir+xml"}
    )
    versioned = records.client.get(
        f"/fhir/Observation/{rid}",
        headers={**author, "Accept": "application/fhir+json; fhirVersion=4.0"},
    )
    formatted = records.client.get(f"/fhir/Observation/{rid}?_format=json", headers=author)

    statuses = [r.status_code for r in (forbidden, missing, anonymous, unknown_type, xml)]
    assert statuses == [403, 404, 401, 404, 406]
    for refused in (forbidden, missing, anonymous, unknown_type, xml):
        assert refused.mimetype == FHIR
        OperationOutcome.model_validate(refused.json)
    assert "4548-4" not in forbidden.get_data(as_text=True)
    assert (versioned.status_code, versioned.mimetype) == (200, FHIR)
    assert versioned.json["resourceType"] == "Observation"
    assert formatted.mimetype == FHIR


def test_an_invalid_resource_is_a_422_outcome_naming_the_element(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    body = json.loads(lab(patient))
    body["status"] = 7

    refused = post(records, author, json.dumps(body).encode())

    assert refused.status_code == 422
    outcome = OperationOutcome.model_validate(refused.json)
    assert ["Observation.status"] in [i.expression for i in outcome.issue]


def test_a_granular_scope_shows_only_what_its_restriction_covers_on_both_apis(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    lab_id = post(records, author, lab(patient)).json["id"]
    vital_id = post(records, author, lab(patient, "8867-4", kind="vital-signs")).json["id"]
    labs_only = bearer(
        token("practitioner", "dr-lee", org="org-a", scope=f"user/Observation.rs?category={LAB}")
    )

    fhir_search = records.client.get(f"/fhir/Observation?patient={patient}", headers=labs_only)
    native_list = records.client.get(f"/patients/{patient}/records", headers=labs_only)
    fhir_vital = records.client.get(f"/fhir/Observation/{vital_id}", headers=labs_only)
    native_vital = records.client.get(f"/patients/{patient}/records/{vital_id}", headers=labs_only)
    fhir_lab = records.client.get(f"/fhir/Observation/{lab_id}", headers=labs_only)
    everything = records.client.get(f"/fhir/Patient/{patient}/$everything", headers=labs_only)

    assert [e["resource"]["id"] for e in fhir_search.json["entry"]] == [lab_id]
    assert [i["id"] for i in native_list.json["items"]] == [lab_id]
    assert (fhir_vital.status_code, native_vital.status_code) == (403, 403)
    assert fhir_lab.status_code == 200
    assert [e["resource"]["id"] for e in everything.json["entry"]] == [lab_id]
    assert everything.json["total"] == 1


def test_an_erased_chart_is_gone_from_the_fhir_base(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    rid = post(records, me, lab(patient)).json["id"]
    assert records.client.delete(f"/patients/{patient}", headers=me).status_code == 204

    read = records.client.get(f"/fhir/Observation/{rid}", headers=me)
    searched = records.client.get(f"/fhir/Observation?patient={patient}", headers=me)

    assert (read.status_code, searched.status_code) == (410, 410)
    assert OperationOutcome.model_validate(read.json).issue[0].code == "deleted"
