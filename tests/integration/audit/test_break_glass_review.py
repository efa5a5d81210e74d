"""Compliance works the break-glass queue; each review is stored and becomes a trail fact."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import select

from services.audit.store import entries
from services.audit.worker import build_worker
from shared.break_glass import BY_CODE
from shared.events import TOPIC_AUDIT
from tests.conftest import bearer
from tests.integration.audit.conftest import start_group_at_end, wait_until
from tests.integration.audit.test_worker import running
from tests.unit.audit.facts import access


def test_compliance_reviews_a_break_glass_access_once(client, seed, token):
    patient = f"p-{uuid4()}"
    ordinary, emergency = seed(
        access(patient, actor="practitioner:dr-lee"),
        access(
            patient,
            actor="practitioner:dr-er",
            org="org-er",
            purpose="ETREAT",
            break_glass_reason="OVRER",
            break_glass_note="key-1.bm9uY2U.c2VhbGVkIG5vdGU",
        ),
    )
    officer = bearer(token("compliance", "officer-1"))

    queue = client.get(
        "/audit/break-glass", query_string={"reviewed": "false"}, headers=officer
    ).json
    assert emergency.id in [e["id"] for e in queue["items"]]
    assert ordinary.id not in [e["id"] for e in queue["items"]]
    [queued] = [e for e in queue["items"] if e["id"] == emergency.id]
    assert queued["break_glass_reason"] == "OVRER"
    assert queued["break_glass_reason_display"] == BY_CODE["OVRER"].display
    assert queued["break_glass_note"] == "key-1.bm9uY2U.c2VhbGVkIG5vdGU"  # sealed, as it came

    review = client.post(
        f"/audit/break-glass/{emergency.id}/review",
        headers=officer,
        json={"decision": "justified", "note": "cardiac arrest"},
    )
    again = client.post(
        f"/audit/break-glass/{emergency.id}/review",
        headers=officer,
        json={"decision": "unjustified", "note": "second thoughts"},
    )

    assert review.status_code == 201
    assert (review.json["decision"], review.json["reviewer"]) == (
        "justified",
        "compliance:officer-1",
    )
    assert again.status_code == 409
    unreviewed = client.get(
        "/audit/break-glass", query_string={"reviewed": "false"}, headers=officer
    ).json
    reviewed = client.get(
        "/audit/break-glass", query_string={"reviewed": "true"}, headers=officer
    ).json
    assert emergency.id not in [e["id"] for e in unreviewed["items"]]
    [done] = [e for e in reviewed["items"] if e["id"] == emergency.id]
    assert done["review"]["note"] == "cardiac arrest"


def test_reviewing_what_is_not_a_break_glass_access_is_refused(client, seed, token):
    [ordinary] = seed(access(f"p-{uuid4()}", actor="practitioner:dr-lee"))
    officer = bearer(token("compliance", "officer-1"))

    not_break_glass = client.post(
        f"/audit/break-glass/{ordinary.id}/review", headers=officer, json={"decision": "justified"}
    )
    unknown = client.post(
        f"/audit/break-glass/{uuid4()}/review", headers=officer, json={"decision": "justified"}
    )
    bad_decision = client.post(
        f"/audit/break-glass/{ordinary.id}/review", headers=officer, json={"decision": "maybe"}
    )

    assert (not_break_glass.status_code, unknown.status_code, bad_decision.status_code) == (
        422,
        404,
        422,
    )


def test_a_review_is_published_and_comes_back_as_an_entry_of_the_trail(
    client, seed, token, settings, engine, kafka_tap
):
    start_group_at_end(settings.kafka_bootstrap_servers, settings.extra["consumer_group"])
    patient = f"p-{uuid4()}"
    [emergency] = seed(access(patient, actor="practitioner:dr-er", break_glass_reason="OVRER"))
    tap = kafka_tap(TOPIC_AUDIT)

    client.post(
        f"/audit/break-glass/{emergency.id}/review",
        headers=bearer(token("compliance", "officer-1")),
        json={"decision": "unjustified", "note": "no emergency on record"},
    )

    def review_entry():
        with engine.connect() as conn:
            return conn.execute(
                select(entries.c.actor, entries.c.outcome, entries.c.patient).where(
                    entries.c.type == "caretrail.break-glass.reviewed.v1",
                    entries.c.patient == patient,
                )
            ).first()

    with running(build_worker(settings)):  # its relay publishes, its consumer appends
        [published] = tap.events(1, where=lambda e: e.subject == patient)
        row = wait_until(review_entry)

    assert published.data["entry_id"] == emergency.id
    assert published.data["decision"] == "unjustified"
    assert tuple(row) == ("compliance:officer-1", "unjustified", patient)
