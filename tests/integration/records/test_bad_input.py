"""Bad input gets a 4xx problem+json, writes nothing and emits no event."""

from __future__ import annotations

import json
import uuid

from shared.events import TOPIC_ACCESS, TOPIC_RECORDS
from tests.conftest import bearer
from tests.integration.records.support import observation

INJECTION = "' OR '1'='1'; DROP TABLE records; --"


def bad_requests(patient: str, record_id: str) -> list[tuple[str, dict, int]]:
    """(what, request arguments, expected status)"""
    base = f"/patients/{patient}/records"
    valid = observation()
    return [
        (
            "malformed JSON",
            {
                "method": "POST",
                "path": base,
                "data": '{"resourceType": "Observation",',
                "content_type": "application/json",
            },
            400,
        ),
        (
            "wrong content type",
            {
                "method": "POST",
                "path": base,
                "data": json.dumps(valid),
                "content_type": "text/plain",
            },
            415,
        ),
        (
            "form body",
            {"method": "POST", "path": base, "data": {"resourceType": "Observation"}},
            415,
        ),
        (
            "unknown resource type",
            {"method": "POST", "path": base, "json": {**valid, "resourceType": "Spaceship"}},
            422,
        ),
        (
            "a FHIR type outside the chart",
            {"method": "POST", "path": base, "json": {"resourceType": "Consent"}},
            422,
        ),
        ("invalid FHIR", {"method": "POST", "path": base, "json": {**valid, "status": 7}}, 422),
        (
            "a code outside its required value set",
            {"method": "POST", "path": base, "json": {**valid, "status": "bogus"}},
            422,
        ),
        (
            "a value with a dataAbsentReason (obs-6)",
            {"method": "POST", "path": base, "json": {**valid, "dataAbsentReason": {"text": "x"}}},
            422,
        ),
        (
            "an amendment outside a required value set",
            {"method": "PUT", "path": f"{base}/{record_id}", "json": {**valid, "status": "bogus"}},
            422,
        ),
        (
            "unknown element",
            {"method": "POST", "path": base, "json": {**valid, "$where": "1 == 1"}},
            422,
        ),
        ("a JSON array", {"method": "POST", "path": base, "json": [valid]}, 422),
        (
            "NaN",
            {
                "method": "POST",
                "path": base,
                "data": '{"value": NaN}',
                "content_type": "application/json",
            },
            400,
        ),
        (
            "deep nesting",
            {
                "method": "POST",
                "path": base,
                "data": "[" * 5000 + "]" * 5000,
                "content_type": "application/json",
            },
            400,
        ),
        (
            "another patient's subject",
            {"method": "POST", "path": base, "json": observation(patient="somebody-else")},
            422,
        ),
        (
            "10 MB body",
            {
                "method": "POST",
                "path": base,
                "json": {**valid, "note": [{"text": "x" * 10_000_000}]},
            },
            413,
        ),
        (
            "injection as patient id",
            {"method": "POST", "path": f"/patients/{INJECTION}/records", "json": valid},
            422,
        ),
        (
            "injection as patient id, read",
            {"method": "GET", "path": f"/patients/{INJECTION}/records"},
            422,
        ),
        ("invalid record id", {"method": "GET", "path": f"{base}/{INJECTION}"}, 404),
        ("invalid version", {"method": "GET", "path": f"{base}/{record_id}/versions/x"}, 404),
        (
            "injection as category",
            {"method": "GET", "path": base, "query_string": {"category": INJECTION}},
            422,
        ),
        (
            "injection as since",
            {"method": "GET", "path": base, "query_string": {"since": INJECTION}},
            422,
        ),
        (
            "injection as cursor",
            {"method": "GET", "path": base, "query_string": {"cursor": INJECTION}},
            422,
        ),
        (
            "forged cursor",
            {"method": "GET", "path": base, "query_string": {"cursor": "eyJiZWZvcmUiOiAiMSJ9"}},
            422,
        ),
        (
            "limit out of range",
            {"method": "GET", "path": base, "query_string": {"limit": 100000}},
            422,
        ),
        (
            "unknown purpose",
            {"method": "GET", "path": base, "headers": {"X-Purpose-Of-Use": INJECTION}},
            422,
        ),
        (
            "bad If-Match",
            {
                "method": "PUT",
                "path": f"{base}/{record_id}",
                "json": valid,
                "headers": {"If-Match": INJECTION},
            },
            422,
        ),
    ]


def test_bad_input_is_refused_with_a_problem_and_changes_nothing(records, kafka_tap, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    record_id = records.write(me, patient, observation())
    records.publish()
    events = kafka_tap(TOPIC_RECORDS, TOPIC_ACCESS)
    before = (records.rows("records"), records.rows("record_versions"), records.rows("outbox"))

    for what, request, status in bad_requests(patient, record_id):
        request = dict(request)
        method, path = request.pop("method"), request.pop("path")
        headers = {**me, **request.pop("headers", {})}
        response = records.client.open(path, method=method, headers=headers, **request)
        assert response.status_code == status, (what, response.status_code, response.json)
        assert response.mimetype == "application/problem+json", what
        assert "x" * 100 not in response.get_data(as_text=True), what

    after = (records.rows("records"), records.rows("record_versions"), records.rows("outbox"))
    assert after == before
    assert events.events(where=lambda e: e.subject == patient, timeout_seconds=1.5) == []


def test_invalid_fhir_is_answered_with_the_path_that_is_wrong_and_not_the_value(records, token):
    patient = f"pat-{uuid.uuid4()}"
    secret = "HIV-positive-since-2019"
    resource = {**observation(), "effectiveDateTime": secret, "status": ["final"]}

    response = records.client.post(
        f"/patients/{patient}/records", json=resource, headers=bearer(token("patient", patient))
    )

    assert response.status_code == 422
    paths = {e["path"] for e in response.json["errors"]}
    assert paths == {"Observation.effectiveDateTime", "Observation.status"}
    assert secret not in response.get_data(as_text=True)


def test_an_injected_code_matches_nothing_and_breaks_nothing(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    records.write(me, patient, observation())

    response = records.client.get(
        f"/patients/{patient}/records", query_string={"code": INJECTION}, headers=me
    )

    assert response.status_code == 200 and response.json["items"] == []
    assert len(records.client.get(f"/patients/{patient}/records", headers=me).json["items"]) == 1


def test_a_resource_hl7_refuses_is_answered_with_the_element_and_rule_on_write_and_amend(
    records, token
):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    record_id = records.write(me, patient, observation())
    base = f"/patients/{patient}/records"
    broken = {**observation(), "status": "bogus", "dataAbsentReason": {"text": "x"}}

    created = records.client.post(base, json=broken, headers=me)
    amended = records.client.put(f"{base}/{record_id}", json=broken, headers=me)

    for response in (created, amended):
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        found = {(e["path"], e["problem"]) for e in response.json["errors"]}
        assert found == {("Observation.status", "code-invalid"), ("Observation", "obs-6")}
        assert "bogus" not in response.get_data(as_text=True)


def test_the_fhir_base_refuses_the_same_resource_with_an_outcome_naming_the_elements(
    records, token
):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient)) | {"Content-Type": "application/fhir+json"}
    broken = {**observation(patient=patient), "status": "bogus", "dataAbsentReason": {"text": "x"}}

    created = records.client.post("/fhir/Observation", json=broken, headers=me)

    assert created.status_code == 422
    issues = created.json["issue"]
    assert created.json["resourceType"] == "OperationOutcome"
    assert {(i.get("expression") or [None])[0] for i in issues} >= {
        "Observation.status",
        "Observation",
    }
    assert "bogus" not in created.get_data(as_text=True)
    assert records.rows("records", patient=patient) == 0
