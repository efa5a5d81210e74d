"""What the compliance console asks of the audit API: refusal reasons, disclosure exports,
totals and chart data, filters, one entry's detail, who the token is, names, and the last
scheduled verification."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import update

from services.audit.signing import signing_key
from services.audit.store import verifications
from services.audit.verification import run_verification, verification_job
from shared.config import Settings
from shared.db import session_factory
from tests.conftest import bearer
from tests.integration.audit.conftest import wait_until
from tests.unit.audit.facts import access

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# Tests of SQL written per dialect (days, JSON text) run on both databases.
BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def settings(database_url, key_file):
    # These tests read and write the database only: no broker to start for them.
    return Settings.from_env(
        "audit",
        database_url=database_url,
        kafka_bootstrap_servers="127.0.0.1:9",
        signing_key_file=str(key_file),
    )


@pytest.fixture
def compliance(token):
    return bearer(token("compliance", "officer-1"))


@SQLITE
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


@SQLITE
def test_the_accounting_of_disclosures_exports_whole_as_csv_and_as_audit_events(
    client, seed, compliance
):
    patient = f"p-{uuid4()}"
    seed(
        *[access(patient, actor="practitioner:dr-lee", org="org-a") for _ in range(250)],
        access(patient, actor="practitioner:dr-x", org="org-b", outcome="deny"),
        access(patient, actor=f"patient:{patient}"),  # the patient's own read: no disclosure
    )
    url = f"/audit/patients/{patient}/disclosures"

    bundle = client.get(url, headers={**compliance, "Accept": "application/fhir+json"})
    exported = client.get(url, headers={**compliance, "Accept": "text/csv"})

    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert f'filename="disclosures-{patient}.csv"' in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(rows) == 251
    assert (rows[0]["actor"], rows[0]["outcome"], rows[0]["reason"]) == (
        "practitioner:dr-x",
        "deny",
        "no consent covers it",
    )
    assert bundle.status_code == 200 and bundle.mimetype == "application/fhir+json"
    assert len(Bundle.model_validate(bundle.json).entry) == 251


@BOTH
def test_a_summary_counts_a_search_per_day_and_per_org_with_its_refusals(client, seed, compliance):
    patient = f"p-{uuid4()}"
    day_one = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    day_two = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    seed(
        access(patient, actor="practitioner:dr-lee", org="org-a", time=day_one),
        access(patient, actor="practitioner:dr-x", org="org-b", outcome="deny", time=day_two),
        access(patient, actor="practitioner:dr-y", org="org-b", outcome="deny", time=day_two),
        access(patient, actor="practitioner:dr-z", org="org-b", time=day_two),
    )

    summary = client.get(
        "/audit/events/summary", query_string={"patient": patient}, headers=compliance
    ).json

    assert (summary["total"], summary["permit"], summary["deny"]) == (4, 2, 2)
    assert summary["by_day"] == [
        {"day": "2026-03-01", "total": 1, "permit": 1, "deny": 0},
        {"day": "2026-03-02", "total": 3, "permit": 1, "deny": 2},
    ]
    assert summary["by_org"] == [
        {"org": "org-b", "total": 3, "permit": 1, "deny": 2},
        {"org": "org-a", "total": 1, "permit": 1, "deny": 0},
    ]


@BOTH
def test_the_trail_filters_by_organization_and_by_record(client, seed, compliance):
    patient = f"p-{uuid4()}"
    seed(
        access(patient, actor="practitioner:dr-lee", org="org-a", record_ids=("r_1", "r-2")),
        access(patient, actor="practitioner:dr-kim", org="org-b", record_ids=("rx1",)),
        access(patient, actor="practitioner:dr-kim", org="org-b", record_ids=("r-2",)),
    )

    def actors(**query):
        found = client.get(
            "/audit/events", query_string={"patient": patient, **query}, headers=compliance
        )
        return sorted((e["actor"], e["org"], tuple(e["record_ids"])) for e in found.json["items"])

    assert actors(org="org-a") == [("practitioner:dr-lee", "org-a", ("r_1", "r-2"))]
    # `_` is a LIKE wildcard: an id with one matches itself, not `rx1`.
    assert actors(record="r_1") == [("practitioner:dr-lee", "org-a", ("r_1", "r-2"))]
    assert [a[1] for a in actors(record="r-2")] == ["org-b", "org-a"]
    assert actors(record="r-") == []


@SQLITE
def test_one_entry_shows_its_place_in_its_chain_and_its_review(client, seed, compliance, token):
    patient = f"p-{uuid4()}"
    [emergency] = seed(
        access(patient, actor="practitioner:dr-er", purpose="ETREAT", break_glass_reason="OVRER")
    )
    client.post(
        f"/audit/break-glass/{emergency.id}/review",
        json={"decision": "justified", "note": "arrest in ward 3"},
        headers=compliance,
    )

    shown = client.get(f"/audit/events/{emergency.id}", headers=compliance)
    stranger = f"p-{uuid4()}"
    hidden = client.get(
        f"/audit/events/{emergency.id}",
        headers=bearer(token("patient", stranger, patient=stranger)),
    )

    assert shown.status_code == 200
    assert (shown.json["topic"], shown.json["partition"], shown.json["seq"]) == (
        "caretrail.access.v1",
        0,
        1,
    )
    assert len(shown.json["hash"]) == 64 and shown.json["prev_hash"] == "0" * 64
    assert shown.json["review"]["note"] == "arrest in ward 3"
    assert hidden.status_code == 404
    assert client.get(f"/audit/events/{uuid4()}", headers=compliance).status_code == 404


@SQLITE
def test_whoami_says_who_the_server_verified_the_token_to_be(client, token):
    me = client.get("/audit/whoami", headers=bearer(token("practitioner", "dr-lee", org="org-a")))
    forged = client.get("/audit/whoami", headers=bearer(token("compliance", "x") + "tampered"))

    assert me.status_code == 200
    assert (me.json["actor"], me.json["role"], me.json["org"]) == (
        "practitioner:dr-lee",
        "practitioner",
        "org-a",
    )
    assert forged.status_code == 401


@SQLITE
def test_the_last_scheduled_verification_is_shown_signed_and_a_forged_one_is_not_trusted(
    client, seed, compliance, engine, settings
):
    seed(*[access(f"p-{uuid4()}", actor="practitioner:dr-lee") for _ in range(3)])
    sessions = session_factory(engine)
    assert client.get("/audit/verifications", headers=compliance).json["items"] == []

    run_verification(sessions, signing_key(settings))
    [kept] = client.get("/audit/verifications", headers=compliance).json["items"]
    with sessions() as session:  # someone without the key writes a result of their own
        session.execute(update(verifications).values(entries=99))
        session.commit()
    [forged] = client.get("/audit/verifications", headers=compliance).json["items"]

    assert (kept["ok"], kept["chains"], kept["entries"], kept["problems"]) == (True, 1, 3, [])
    assert kept["signature_ok"] is True
    assert forged["entries"] == 99 and forged["signature_ok"] is False


@SQLITE
def test_the_worker_verifies_the_trail_when_it_starts_and_keeps_the_result(
    client, seed, compliance, engine, settings
):
    seed(access(f"p-{uuid4()}", actor="practitioner:dr-lee"))
    stop = threading.Event()
    job = verification_job(session_factory(engine), signing_key(settings), 3600)
    runner = threading.Thread(target=job, args=(stop,))
    runner.start()
    try:
        items = wait_until(
            lambda: client.get("/audit/verifications", headers=compliance).json["items"]
        )
    finally:
        stop.set()
        runner.join(timeout=10)

    assert (items[0]["ok"], items[0]["entries"], items[0]["signature_ok"]) == (True, 1, True)
    assert not runner.is_alive()
