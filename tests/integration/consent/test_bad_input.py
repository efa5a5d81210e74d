"""Bad input gets a clear 4xx problem+json, writes nothing and emits no event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import bearer
from tests.integration.consent.conftest import ConsentService, a_grant

NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=3)


def _period(start: datetime | str, end: datetime | str) -> dict[str, str]:
    iso = lambda d: d if isinstance(d, str) else d.isoformat()  # noqa: E731
    return {"start": iso(start), "end": iso(end)}


BAD_GRANTS: list[tuple[str, Any, int]] = [
    ("unknown category", a_grant(categories=["Bloodwork"]), 422),
    ("unknown security label", a_grant(security_labels=["XYZ"]), 422),
    ("unknown purpose", a_grant(purposes=["MARKETING"]), 422),
    ("unknown action", a_grant(actions=["write"]), 422),
    ("no category", a_grant(categories=[]), 422),
    ("no purpose", a_grant(purposes=[]), 422),
    ("end before start", a_grant(period=_period(LATER, NOW + timedelta(days=1))), 422),
    ("end equal to start", a_grant(period=_period(LATER, LATER)), 422),
    (
        "period in the past",
        a_grant(period=_period(NOW - timedelta(days=9), NOW - timedelta(days=2))),
        422,
    ),
    ("time without offset", a_grant(period=_period("2031-01-01T00:00:00", LATER)), 422),
    ("not a date", a_grant(period=_period(NOW, "next tuesday")), 422),
    ("no period", {k: v for k, v in a_grant().items() if k != "period"}, 422),
    ("unknown grantee type", a_grant(grantee={"type": "family", "id": "mum"}), 422),
    ("grantee id not a FHIR id", a_grant(grantee={"type": "practitioner", "id": "dr lee/x"}), 422),
    ("categories not a list", a_grant(categories="Observation"), 422),
    ("unknown field", a_grant(note="share everything"), 422),
    ("a list instead of an object", [a_grant()], 422),
]


@pytest.mark.parametrize(("case", "body", "status"), BAD_GRANTS, ids=[c[0] for c in BAD_GRANTS])
def test_a_bad_grant_is_refused_and_changes_nothing(
    service: ConsentService, case: str, body: Any, status: int
):
    patient = service.new_patient()

    response = service.client.post(
        f"/patients/{patient.id}/consents", json=body, headers=patient.headers
    )

    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert service.counts() == (0, 0)
    assert service.relay.publish_pending() == 0


def test_a_patient_granting_on_another_chart_is_refused(service: ConsentService):
    patient, other = service.new_patient(), service.new_patient()
    response = service.client.post(
        f"/patients/{other.id}/consents", json=a_grant(), headers=patient.headers
    )
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert service.counts() == (0, 0)


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status"),
    [
        ("no token", {"json": a_grant(), "headers": {}}, 401),
        ("forged token", {"json": a_grant(), "headers": bearer("e30.e30.e30")}, 401),
        ("text body", {"data": "grant please", "content_type": "text/plain"}, 415),
        ("malformed JSON", {"data": "{", "content_type": "application/json"}, 400),
        ("body too large", {"json": a_grant(note="x" * 2_000_000)}, 413),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_grant_that_is_not_a_valid_request_is_refused(
    service: ConsentService, case: str, request_kwargs: dict[str, Any], status: int
):
    patient = service.new_patient()
    kwargs = {"headers": patient.headers} | request_kwargs
    response = service.client.post(f"/patients/{patient.id}/consents", **kwargs)

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert service.counts() == (0, 0)


def test_an_admin_granting_on_a_patient_id_that_is_not_a_fhir_id_is_refused(
    service: ConsentService,
):
    admin = service.as_role("admin", "ops")
    response = service.client.post("/patients/a%20b/consents", json=a_grant(), headers=admin)
    assert response.status_code == 422
    assert service.counts() == (0, 0)


@pytest.mark.parametrize(
    ("case", "path", "status"),
    [
        ("unknown status", "/patients/{pid}/consents?status=paused", 422),
        ("limit zero", "/patients/{pid}/consents?limit=0", 422),
        ("limit not a number", "/patients/{pid}/consents?limit=many", 422),
        ("cursor not base64", "/patients/{pid}/consents?cursor=%%%", 422),
        ("cursor not ours", "/patients/{pid}/consents?cursor=aGVsbG8=", 422),
        ("unknown consent", "/consents/no-such-consent", 404),
        ("history of an unknown consent", "/consents/no-such-consent/history", 404),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("/") else "",
)
def test_a_bad_read_is_a_clear_4xx(service: ConsentService, case: str, path: str, status: int):
    patient = service.new_patient()
    response = service.client.get(path.format(pid=patient.id), headers=patient.headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


QUESTION = {
    "patient": "p-1",
    "grantee": {"practitioner": "dr-lee"},
    "action": "read",
    "category": "Observation",
    "purpose": "TREAT",
}


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("unknown category", QUESTION | {"category": "Bloodwork"}),
        ("wildcard category", QUESTION | {"category": "*"}),
        ("unknown purpose", QUESTION | {"purpose": "MARKETING"}),
        ("unknown label", QUESTION | {"security_labels": ["XYZ"]}),
        ("unknown action", QUESTION | {"action": "delete"}),
        ("no grantee", {k: v for k, v in QUESTION.items() if k != "grantee"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_bad_access_question_is_refused(service: ConsentService, case: str, body: Any):
    admin = service.as_role("admin", "ops")
    response = service.client.post("/access-decisions", json=body, headers=admin)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "if_match",
    ['"²"', "9" * 5000, 'W/"1"', "garbage", '"-1"', '"1.0"'],
    ids=["superscript digit", "5000 digits", "weak tag", "garbage", "negative", "decimal"],
)
def test_an_if_match_naming_no_version_of_ours_is_a_conflict_not_an_error(
    service: ConsentService, if_match: str
):
    patient = service.new_patient()
    granted = service.grant(patient)
    response = service.client.post(
        f"/consents/{granted['id']}/revoke", headers=patient.headers | {"If-Match": if_match}
    )
    assert response.status_code == 409
    assert service.counts() == (1, 1)
