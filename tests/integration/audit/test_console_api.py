"""What the compliance console asks of the audit API: refusal reasons, disclosure exports,
totals and chart data, filters, one entry's detail, who the token is, names, and the last
scheduled verification."""

from __future__ import annotations

import csv
import io
from uuid import uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.conftest import bearer
from tests.unit.audit.facts import access

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def compliance(token):
    return bearer(token("compliance", "officer-1"))


def test_a_refusal_keeps_its_reason_in_the_trail_its_csv_and_its_audit_events(
    client, seed, compliance
):
    patient = f"p-{uuid4()}"
    seed(access(patient, actor="practitioner:dr-x", org="org-b", outcome="deny"))

    found = client.get("/audit/events", query_string={"patient": patient}, headers=compliance)
    exported = client.get(
        "/audit/events",
        query_string={"patient": patient},
        headers={**compliance, "Accept": "text/csv"},
    )
    bundle = client.get(
        "/audit/events",
        query_string={"patient": patient},
        headers={**compliance, "Accept": "application/fhir+json"},
    )

    assert found.json["items"][0]["reason"] == "no consent covers it"
    [row] = csv.DictReader(io.StringIO(exported.get_data(as_text=True)))
    assert row["reason"] == "no consent covers it"
    [event] = Bundle.model_validate(bundle.json).entry
    assert event.resource.outcomeDesc == "access denied: no consent covers it"
