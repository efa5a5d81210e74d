"""FHIR resources as the chart takes them: validated, labelled, coded, errors without values."""

from __future__ import annotations

import json

import pytest

from services.records.resources import parse_body, validate_resource
from shared.errors import InvalidInput


def test_a_valid_resource_keeps_its_labels_and_the_codes_it_can_be_found_by():
    resource = validate_resource(
        {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
            "patient": {"reference": "Patient/pat-1"},
            "occurrenceDateTime": "2021-01-01",
            "meta": {"security": [{"code": "SEX"}, {"code": "R"}]},
        },
        "pat-1",
    )

    assert resource.category == "Immunization"
    assert resource.security == {"SEX"}  # codes outside SECURITY_LABELS are not enforced
    assert resource.codes == {"207", "http://hl7.org/fhir/sid/cvx|207"}


def test_the_chart_sets_the_id_and_version_of_what_it_stores():
    resource = validate_resource({"resourceType": "Patient", "id": "client-id"}, "pat-1")
    stored = resource.with_identity("rec-1", 3, "2026-05-01T12:00:00Z")
    assert (stored["id"], stored["meta"]["versionId"]) == ("rec-1", "3")
    assert list(stored)[0] == "resourceType"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"resourceType": "Spaceship"}, "resourceType"),
        ({"resourceType": "Consent", "status": "active"}, "resourceType"),
        ({"resourceType": "Observation", "code": {"text": "x"}, "status": 1}, "Observation.status"),
        (
            {"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": 5}]}},
            "Observation.code.coding[0].code",
        ),
        (
            {"resourceType": "Condition", "subject": {"reference": "Patient/pat-2"}},
            "Condition.subject.reference",
        ),
    ],
)
def test_invalid_resources_name_the_fhir_path_that_is_wrong(body, path):
    with pytest.raises(InvalidInput) as refused:
        validate_resource(body, "pat-1")
    assert path in {e["path"] for e in refused.value.errors}


def test_errors_never_quote_the_value_sent():
    secret = "schizophrenia-diagnosed"
    with pytest.raises(InvalidInput) as refused:
        validate_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "effectiveDateTime": secret,
                "issued": secret,
            },
            "pat-1",
        )
    assert secret not in json.dumps(refused.value.errors) + refused.value.detail


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b'{"a": NaN}', b'{"a": Infinity}', b"1e999", b"[" * 100_000, b"[" * 65 + b"]" * 65],
)
def test_only_plain_bounded_json_is_accepted(raw):
    with pytest.raises(InvalidInput):
        parse_body(raw)
