"""One code's series across Observations: matching, units (UCUM), summary and direction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.records.trends import (
    FALLING,
    RISING,
    STEADY,
    Code,
    Measured,
    code_of,
    direction,
    trend,
)
from services.records.units import convert
from shared.errors import InvalidInput

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
GLUCOSE = Code(LOINC, "2345-7")


def glucose(record_id: str, when: str, value: float, unit: str, **extra: Any) -> Measured:
    resource = {
        "resourceType": "Observation",
        "status": extra.pop("status", "final"),
        "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    return Measured(record_id, extra.pop("source", "ehr"), resource)


def test_a_code_must_name_its_system():
    assert code_of("http://loinc.org|8480-6") == Code(LOINC, "8480-6")
    for bad in ("8480-6", "|8480-6", "http://loinc.org|", "a|b|c"):
        with pytest.raises(InvalidInput):
            code_of(bad)


def test_ucum_converts_commensurable_units_and_refuses_the_rest():
    assert convert(72500, "g", "kg") == pytest.approx(72.5)
    assert convert(100, "mg/dL", "g/L") == pytest.approx(1.0)
    assert convert(5.5, "mmol/L", "mg/dL") is None  # needs a molar mass UCUM does not know
    assert convert(1, "not a [unit", "kg") is None


def test_values_are_put_in_the_unit_of_the_newest_and_sorted_oldest_first():
    found = trend(
        GLUCOSE,
        [
            glucose("b", "2025-03-01T08:00:00Z", 1.1, "g/L", source="phr"),
            glucose("a", "2025-01-01T08:00:00Z", 95, "mg/dL"),
            glucose("c", "2025-05-01", 120, "mg/dL"),
        ],
    )
    assert found.unit == "mg/dL"
    assert found.code.display == "Glucose"
    assert [(p.record_id, p.value, p.source) for p in found.points] == [
        ("a", 95, "EHR"),
        ("b", 110, "PHR"),
        ("c", 120, "EHR"),
    ]
    assert found.points[2].time == datetime(2025, 5, 1, tzinfo=UTC)
    assert (found.summary.min, found.summary.max, found.summary.last) == (95, 120, 120)


def test_a_value_ucum_cannot_convert_is_kept_marked_and_left_out_of_the_summary():
    found = trend(
        GLUCOSE,
        [glucose("a", "2025-01-01", 6.1, "mmol/L"), glucose("b", "2025-02-01", 99, "mg/dL")],
    )
    assert [(p.value, p.unit, p.normalised) for p in found.points] == [
        (6.1, "mmol/L", False),
        (99, "mg/dL", True),
    ]
    assert (found.summary.min, found.summary.max) == (99, 99)


def test_since_and_until_bound_the_series_and_cancelled_entries_do_not_count():
    entries = [
        glucose("a", "2025-01-01", 90, "mg/dL"),
        glucose("b", "2025-02-01", 91, "mg/dL"),
        glucose("c", "2025-03-01", 92, "mg/dL"),
        glucose("x", "2025-02-15", 400, "mg/dL", status="cancelled"),
    ]
    found = trend(
        GLUCOSE,
        entries,
        since=datetime(2025, 1, 15, tzinfo=UTC),
        until=datetime(2025, 3, 1, tzinfo=UTC),
    )
    assert [p.record_id for p in found.points] == ["b", "c"]
    assert found.record_ids == ["b", "c"]


def test_no_values_is_an_empty_series_without_a_summary():
    found = trend(Code(LOINC, "8480-6"), [glucose("a", "2025-01-01", 90, "mg/dL")])
    assert (found.points, found.unit, found.summary) == ([], None, None)


def test_the_direction_compares_the_later_half_with_the_earlier():
    assert direction([150, 142, 131]) == FALLING
    assert direction([2, 5, 8]) == RISING
    assert direction([80.0, 80.3, 79.9, 80.1]) == STEADY
    assert direction([7]) == STEADY
