"""Trends over a real chart: one code's values from EHR and PHR in one unit, components of a
panel, symptoms, the SVG chart, and the one access fact each trend read leaves in Kafka."""

from __future__ import annotations

import uuid
from typing import Any
from xml.etree import ElementTree

from shared.events import TOPIC_ACCESS
from tests.conftest import bearer
from tests.integration.records.support import consent_granted

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
WEIGHT = f"{LOINC}|29463-7"


def measured(code: str, when: str, value: float | int, unit: str | None, **extra: Any) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": LOINC, "code": code, "display": extra.pop("display", None)}]
        },
        "effectiveDateTime": when,
        **extra,
    }
    if unit is None:
        resource["valueInteger"] = value
    else:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return resource


def blood_pressure(when: str, systolic: int, diastolic: int) -> dict[str, Any]:
    def component(code: str, value: int, display: str) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": when,
        "component": [
            component("8480-6", systolic, "Systolic blood pressure"),
            component("8462-4", diastolic, "Diastolic blood pressure"),
        ],
    }


def test_weights_in_grams_and_kilograms_from_ehr_and_phr_are_one_series_in_one_unit(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    doctor = bearer(token("practitioner", "dr-lee", org="org-a"))
    clinic = records.write(
        doctor, patient, measured("29463-7", "2025-01-10T09:00:00Z", 81500, "g", display="Weight")
    )
    home = records.write(me, patient, measured("29463-7", "2025-06-01", 80.0, "kg"))
    latest = records.write(me, patient, measured("29463-7", "2025-11-20T07:30:00Z", 78.2, "kg"))
    records.write(me, patient, measured("8867-4", "2025-11-20T07:30:00Z", 64, "/min"))
    records.write(me, patient, measured("29463-7", "2024-01-01", 90, "kg"))

    response = records.client.get(
        f"/patients/{patient}/trends",
        query_string={"code": WEIGHT, "since": "2025-01-01T00:00:00Z"},
        headers=me,
    )
    records.publish()

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["code"] == {"system": LOINC, "code": "29463-7", "display": "Weight"}
    assert body["unit"] == "kg"
    assert [(p["value"], p["unit"], p["source"], p["record_id"]) for p in body["points"]] == [
        (81.5, "kg", "EHR", clinic),
        (80.0, "kg", "PHR", home),
        (78.2, "kg", "PHR", latest),
    ]
    assert body["points"][1]["time"].startswith("2025-06-01T00:00:00")
    assert body["summary"] == {"min": 78.2, "max": 81.5, "last": 78.2, "direction": "falling"}
    (fact,) = access.events(1, where=lambda e: e.subject == patient, settle_seconds=1.0)
    assert fact.type == "caretrail.record.accessed.v1"
    assert sorted(fact.data["record_ids"]) == sorted([clinic, home, latest])


def test_a_panel_component_is_a_series_and_a_symptom_severity_is_another(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    for day, systolic in (("2025-03-01", 150), ("2025-04-01", 142), ("2025-05-01", 131)):
        records.write(me, patient, blood_pressure(day, systolic, 90))
    for day, severity in (("2025-03-02", 2), ("2025-03-09", 5), ("2025-03-16", 8)):
        records.write(me, patient, measured("72514-3", day, severity, None))  # pain severity

    systolic = records.client.get(
        f"/patients/{patient}/trends", query_string={"code": f"{LOINC}|8480-6"}, headers=me
    ).get_json()
    pain = records.client.get(
        f"/patients/{patient}/trends", query_string={"code": f"{LOINC}|72514-3"}, headers=me
    ).get_json()

    assert [p["value"] for p in systolic["points"]] == [150, 142, 131]
    assert systolic["unit"] == "mm[Hg]"
    assert systolic["summary"]["direction"] == "falling"
    assert [p["value"] for p in pain["points"]] == [2, 5, 8]
    assert pain["summary"] == {"min": 2, "max": 8, "last": 8, "direction": "rising"}


def test_the_trend_as_svg_is_a_chart_readable_on_its_own(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    for day, systolic in (("2025-03-01", 150), ("2025-04-01", 142)):
        records.write(me, patient, blood_pressure(day, systolic, 90))

    response = records.client.get(
        f"/patients/{patient}/trends",
        query_string={"code": f"{LOINC}|8480-6"},
        headers={**me, "Accept": "image/svg+xml"},
    )

    assert response.status_code == 200
    assert response.content_type.startswith("image/svg+xml")
    root = ElementTree.fromstring(response.data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = response.data.decode()
    assert "Systolic blood pressure: last 142 mm[Hg]" in text  # its title says what it shows
    assert "<script" not in text and "<image" not in text and 'href="http' not in text


def test_trends_are_enforced_and_bad_queries_are_refused_clearly(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    doctor = bearer(token("practitioner", "dr-kim", org="org-b"))
    records.write(me, patient, measured("29463-7", "2025-06-01", 80.0, "kg"))
    path = f"/patients/{patient}/trends"

    refused = records.client.get(path, query_string={"code": WEIGHT}, headers=doctor)
    records.project(consent_granted(patient, ("organization", "org-b"), categories=["Observation"]))
    allowed = records.client.get(path, query_string={"code": WEIGHT}, headers=doctor)
    bad = {
        "no system": records.client.get(path, query_string={"code": "29463-7"}, headers=me),
        "no code": records.client.get(path, headers=me),
        "since after until": records.client.get(
            path,
            query_string={"code": WEIGHT, "since": "2025-02-01", "until": "2025-01-01"},
            headers=me,
        ),
    }

    assert refused.status_code == 403
    assert [p["value"] for p in allowed.get_json()["points"]] == [80.0]
    assert {k: r.status_code for k, r in bad.items()} == {
        "no system": 422,
        "no code": 422,
        "since after until": 422,
    }
    assert all(r.content_type == "application/problem+json" for r in bad.values())
