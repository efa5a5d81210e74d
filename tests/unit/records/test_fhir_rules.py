"""What FHIR search and SMART granular scopes ask of a chart's resources."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.records.domain import Criteria, Record, scope_terms, within_scope
from services.records.resources import (
    as_entered_in_error,
    clinical_date,
    dumps,
    loads,
    parse_body,
)
from shared.auth import Principal, Scope
from shared.fhir import DateRange

LAB_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{LAB_SYSTEM}|laboratory"


def observation(kind: str = "laboratory", when: str = "2024-03-01") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": LAB_SYSTEM, "code": kind}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "effectiveDateTime": when,
    }


def practitioner(scope: str) -> Principal:
    scopes = tuple(s for s in (Scope.parse(t) for t in scope.split()) if s)
    return Principal(sub="dr", role="practitioner", scopes=scopes, org="org-a")


def test_an_unrestricted_scope_needs_no_look_at_the_resource():
    assert (
        scope_terms(
            practitioner(f"user/Observation.rs?category={LAB} user/*.rs"), "Observation", "r"
        )
        is None
    )


def test_a_granular_scope_covers_only_resources_matching_its_restriction():
    terms = scope_terms(practitioner(f"user/Observation.rs?category={LAB}"), "Observation", "r")
    assert terms is not None
    assert within_scope("Observation", observation(), terms)
    assert not within_scope("Observation", observation("vital-signs"), terms)


def test_a_scope_restricted_by_a_parameter_not_read_grants_nothing():
    terms = scope_terms(practitioner("user/Observation.rs?status=final"), "Observation", "r")
    assert terms is not None and not within_scope("Observation", observation(), terms)


def test_a_scope_in_another_context_than_the_role_grants_nothing():
    assert (
        scope_terms(practitioner(f"patient/Observation.rs?category={LAB}"), "Observation", "r")
        is None
    )  # no grant: the verdict refuses it


def record(updated: datetime) -> Record:
    return Record(
        "r1", "p", "Observation", "ehr", "a", "o", frozenset(), 1, "current", updated, updated
    )


def test_criteria_match_dates_tokens_types_and_ids():
    criteria = Criteria(
        types=frozenset({"Observation"}),
        ids=frozenset({"r1"}),
        tokens=(("category", "laboratory"), ("code", "http://loinc.org|4548-4")),
        dates=(DateRange.parse("date", "ge2024-02"),),
        last_updated=(DateRange.parse("_lastUpdated", "ge2026-01-01"),),
    )
    assert criteria.admits_record(record(datetime(2026, 2, 1, tzinfo=UTC)))
    assert not criteria.admits_record(record(datetime(2025, 2, 1, tzinfo=UTC)))
    assert criteria.admits("Observation", observation())
    assert not criteria.admits("Observation", observation(when="2024-01-31"))
    assert not criteria.admits("Observation", observation("vital-signs"))


def test_a_period_covers_its_start_to_its_end():
    span = clinical_date("Encounter", {"period": {"start": "2024-01-01", "end": "2024-01-03"}})
    assert span == (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC))
    assert clinical_date("Patient", {"birthDate": "2000-01-01"}) is None


@pytest.mark.parametrize(
    "text",
    [
        b'{"value":6.10}',
        b'{"value":0.1234567890123456789}',
        b'{"value":1E+2}',
        b'{"when":"2024-03-01T09:30:00.120+02:00","n":[1,2.50]}',
    ],
)
def test_numbers_and_times_are_kept_as_sent(text):
    assert dumps(parse_body(text)) == text


def test_entered_in_error_is_the_resources_own_status():
    marked = loads(as_entered_in_error("Observation", dumps(observation())))
    assert marked["status"] == "entered-in-error"
    condition = {"resourceType": "Condition", "clinicalStatus": {"text": "active"}}
    marked = loads(as_entered_in_error("Condition", dumps(condition)))
    assert "clinicalStatus" not in marked
    assert marked["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    patient = dumps({"resourceType": "Patient", "id": "p"})
    assert as_entered_in_error("Patient", patient) == patient
