"""Searching the trail, the accounting of disclosures, CSV and FHIR exports, and who may do
what on every endpoint."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.conftest import bearer
from tests.unit.audit.facts import access, consent_granted, record_created


@pytest.fixture
def compliance(token):
    return bearer(token("compliance", "officer-1"))


def test_compliance_searches_the_trail_by_patient_actor_type_and_outcome(client, seed, compliance):
    p1, p2 = f"p-{uuid4()}", f"p-{uuid4()}"
    seed(
        access(p1, actor="practitioner:dr-lee", org="org-a"),
        access(p1, actor="practitioner:dr-x", org="org-b", outcome="deny"),
        consent_granted(p1),
        access(p2, actor="practitioner:dr-lee", org="org-a"),
    )

    def ids(**params):
        response = client.get("/audit/events", query_string=params, headers=compliance)
        assert response.status_code == 200, response.json
        return [(e["patient"], e["actor"], e["type"]) for e in response.json["items"]]

    assert len(ids(patient=p1)) == 3
    assert ids(patient=p1, outcome="deny") == [
        (p1, "practitioner:dr-x", "caretrail.access.denied.v1")
    ]
    assert ids(actor="practitioner:dr-lee", type="record.accessed") == [
        (p2, "practitioner:dr-lee", "caretrail.record.accessed.v1"),
        (p1, "practitioner:dr-lee", "caretrail.record.accessed.v1"),
    ]
    assert ids(actor="dr-lee", patient=p2) == [
        (p2, "practitioner:dr-lee", "caretrail.record.accessed.v1")
    ]


def test_the_trail_pages_with_an_opaque_cursor_newest_first(client, seed, compliance):
    patient = f"p-{uuid4()}"
    facts = seed(*[access(patient, actor=f"practitioner:dr-{n}") for n in range(5)])

    seen, cursor = [], None
    while True:
        params = {"patient": patient, "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/audit/events", query_string=params, headers=compliance).json
        seen += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == [f.id for f in reversed(facts)]


def test_time_filters_select_the_window(client, seed, compliance):
    patient = f"p-{uuid4()}"
    old = datetime(2024, 1, 1, tzinfo=UTC)
    seed(
        access(patient, actor="practitioner:dr-a", time=old),
        access(patient, actor="practitioner:dr-b"),
    )

    recent = client.get(
        "/audit/events",
        headers=compliance,
        query_string={
            "patient": patient,
            "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        },
    ).json
    early = client.get(
        "/audit/events",
        headers=compliance,
        query_string={"patient": patient, "until": "2024-06-01T00:00:00Z"},
    ).json

    assert [e["actor"] for e in recent["items"]] == ["practitioner:dr-b"]
    assert [e["actor"] for e in early["items"]] == ["practitioner:dr-a"]
    # 01:30 at UTC+2 is before midnight UTC: an offset is honoured, not read as wall time.
    before = client.get(
        "/audit/events",
        headers=compliance,
        query_string={"patient": patient, "until": "2024-01-01T01:30:00+02:00"},
    ).json
    assert before["items"] == []


def test_bad_filters_are_refused_with_a_problem(client, compliance):
    for params in (
        {"type": "no.such.type"},
        {"limit": 0},
        {"since": "yesterday"},
        {"cursor": "%%%"},
    ):
        response = client.get("/audit/events", query_string=params, headers=compliance)
        assert response.status_code == 422, params
        assert response.mimetype == "application/problem+json"


def test_a_patient_sees_only_their_own_trail(client, seed, token):
    mine, theirs = f"p-{uuid4()}", f"p-{uuid4()}"
    seed(access(mine, actor="practitioner:dr-lee"), access(theirs, actor="practitioner:dr-lee"))
    me = bearer(token("patient", mine, patient=mine))

    own = client.get("/audit/events", headers=me).json
    other = client.get("/audit/events", query_string={"patient": theirs}, headers=me)

    assert {e["patient"] for e in own["items"]} == {mine}
    assert other.status_code == 403


def test_disclosures_list_every_access_by_others_and_not_the_patients_own(client, seed, token):
    patient = f"p-{uuid4()}"
    consent = str(uuid4())
    seed(
        access(
            patient,
            actor="practitioner:dr-lee",
            org="org-a",
            record_ids=("r1",),
            consent_ids=(consent,),
        ),
        access(patient, actor="practitioner:dr-x", org="org-b", outcome="deny", record_ids=("r2",)),
        access(
            patient,
            actor="practitioner:dr-er",
            org="org-er",
            purpose="ETREAT",
            break_glass_reason="consent-not-recorded",
            record_ids=("r1", "r2"),
        ),
        access(patient, actor=f"patient:{patient}", record_ids=("r1",), purpose="PATRQT"),
        access(
            patient,
            actor=f"patient:{patient}",
            action="search",
            record_ids=("r1", "r2"),
            purpose="PATRQT",
        ),
        record_created(patient),
        access(f"p-{uuid4()}", actor="practitioner:dr-lee"),
    )

    response = client.get(
        f"/audit/patients/{patient}/disclosures",
        headers=bearer(token("patient", patient, patient=patient)),
    )

    assert response.status_code == 200
    rows = [
        (
            d["actor"],
            d["org"],
            d["outcome"],
            d["purpose"],
            d["record_ids"],
            d["consent_ids"],
            d["break_glass_reason"],
        )
        for d in response.json["items"]
    ]
    assert rows == [
        (
            "practitioner:dr-er",
            "org-er",
            "permit",
            "ETREAT",
            ["r1", "r2"],
            [],
            "consent-not-recorded",
        ),
        ("practitioner:dr-x", "org-b", "deny", "TREAT", ["r2"], [], None),
        ("practitioner:dr-lee", "org-a", "permit", "TREAT", ["r1"], [consent], None),
    ]
    # The patient reads the reason in words; no sealed note is in their accounting.
    glass = response.json["items"][0]
    assert (
        glass["break_glass_reason_display"]
        == "A consent the patient gave is missing or not yet recorded"
    )
    assert "break_glass_note" not in glass
    six_years_ago = datetime.now(UTC).replace(year=datetime.now(UTC).year - 6)
    since = datetime.fromisoformat(response.json["since"])
    assert abs(since - six_years_ago) < timedelta(minutes=1)


def test_disclosures_start_at_since(client, seed, compliance):
    patient = f"p-{uuid4()}"
    seed(
        access(
            patient, actor="practitioner:dr-old", time=datetime.now(UTC) - timedelta(days=6 * 366)
        ),
        access(patient, actor="practitioner:dr-new"),
    )

    default = client.get(f"/audit/patients/{patient}/disclosures", headers=compliance).json
    all_since = client.get(
        f"/audit/patients/{patient}/disclosures",
        query_string={"since": "2015-01-01T00:00:00Z"},
        headers=compliance,
    ).json

    assert [d["actor"] for d in default["items"]] == ["practitioner:dr-new"]
    assert [d["actor"] for d in all_since["items"]] == [
        "practitioner:dr-new",
        "practitioner:dr-old",
    ]


def test_the_trail_exports_as_csv_that_parses(client, seed, compliance):
    patient = f"p-{uuid4()}"
    facts = seed(
        *[
            access(patient, actor="practitioner:dr-lee", record_ids=(f"r{n}", "x"))
            for n in range(450)
        ],
        access(patient, actor="practitioner:dr-x", break_glass_reason="=cmd|' /C calc'!A0"),
    )

    response = client.get(
        "/audit/events",
        query_string={"patient": patient},
        headers={**compliance, "Accept": "text/csv"},
    )

    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 451
    assert rows[0]["id"] == facts[-1].id
    assert rows[0]["break_glass_reason"].startswith("'=")  # no formula runs in a spreadsheet
    assert rows[-1]["record_ids"] == "r0;x" and rows[-1]["patient"] == patient
    assert len(rows[-1]["hash"]) == 64


def test_the_trail_exports_as_a_valid_fhir_bundle_of_audit_events(client, seed, compliance):
    patient = f"p-{uuid4()}"
    seed(
        access(patient, actor="practitioner:dr-lee", org="org-a"),
        access(patient, actor="practitioner:dr-x", outcome="deny"),
        consent_granted(patient),
        record_created(patient),
    )

    response = client.get(
        "/audit/events",
        query_string={"patient": patient, "limit": 3},
        headers={**compliance, "Accept": "application/fhir+json"},
    )

    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(response.json)
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["AuditEvent"] * 3
    assert any(link.relation == "next" for link in bundle.link)


ENDPOINTS = [
    ("GET", "/audit/events"),
    ("GET", "/audit/patients/{patient}/disclosures"),
    ("GET", "/audit/verify"),
    ("GET", "/audit/checkpoints/latest"),
    ("GET", "/audit/break-glass"),
    ("POST", "/audit/break-glass/{entry}/review"),
]
# Who gets through to the endpoint (patient: their own patient id in the path).
ALLOWED = {
    "compliance": {e for e in ENDPOINTS},
    "patient": {ENDPOINTS[0], ENDPOINTS[1]},
    "practitioner": set(),
    "admin": set(),
}


@pytest.mark.parametrize("role", ["compliance", "patient", "practitioner", "admin"])
def test_every_endpoint_answers_by_role(client, seed, token, role):
    patient = f"p-{uuid4()}"
    [emergency] = seed(access(patient, actor="practitioner:dr-er", break_glass_reason="OVRER"))
    claims = {"patient": patient} if role == "patient" else {"org": "org-a"}
    headers = bearer(token(role, patient if role == "patient" else f"{role}-1", **claims))

    for method, path in ENDPOINTS:
        url = path.format(patient=patient, entry=emergency.id)
        body = {"json": {"decision": "justified", "note": "ok"}} if method == "POST" else {}
        response = client.open(url, method=method, headers=headers, **body)
        anonymous = client.open(url, method=method, **body)

        assert anonymous.status_code == 401, url
        if (method, path) in ALLOWED[role]:
            assert response.status_code in (200, 201, 404), (role, url, response.json)
        else:
            assert response.status_code == 403, (role, url, response.status_code)


def test_a_patient_may_not_read_someone_elses_disclosures(client, token):
    me = f"p-{uuid4()}"
    response = client.get(
        f"/audit/patients/p-{uuid4()}/disclosures", headers=bearer(token("patient", me, patient=me))
    )

    assert response.status_code == 403


def test_a_window_starting_at_the_moment_of_a_fact_includes_it(client, seed, compliance):
    patient = f"p-{uuid4()}"
    moment = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)  # a whole second: no fraction to write
    seed(access(patient, actor="practitioner:dr-a", time=moment))

    found = client.get(
        "/audit/events",
        headers=compliance,
        query_string={"patient": patient, "since": "2024-03-01T12:00:00Z"},
    ).json

    assert [e["actor"] for e in found["items"]] == ["practitioner:dr-a"]
