"""Preventive-care reminders over a real chart: evaluated on read, kept and announced by the
records worker's watch (its handlers and daily sweep, run as the worker runs them), with the
`reminder.due` events read back from Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.records.reminding import ReminderWatch, rule_table
from services.records.sealing import KeyRing, master_key_from
from services.records.store import reminders
from shared.events import TOPIC_ACCESS, TOPIC_RECORDS, Event
from shared.inbox import Origin, handle_once
from tests.conftest import bearer
from tests.integration.records.support import MASTER_KEY, consent_granted

CVX, LOINC, SNOMED = "http://hl7.org/fhir/sid/cvx", "http://loinc.org", "http://snomed.info/sct"
TODAY = datetime.now(UTC).date()


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def patient_resource(birth: str, gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "birthDate": birth, "gender": gender}


def immunization(cvx: str, on: str) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": CVX, "code": cvx}]},
        "occurrenceDateTime": on,
        "patient": {"display": "me"},
    }


def coded(category: str, system: str, code: str, on: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": category,
        "status": "completed" if category == "Procedure" else "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"display": "me"},
    }
    resource["performedDateTime" if category == "Procedure" else "effectiveDateTime"] = on
    return resource


def by_rule(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    return {r["rule_id"]: r for r in response.get_json()["reminders"]}


def watch(clock_day: date = TODAY) -> ReminderWatch:
    moment = datetime.combine(clock_day, datetime.min.time(), UTC) + timedelta(hours=12)
    return ReminderWatch(
        rule_table(), KeyRing(master_key_from({"master_key": MASTER_KEY})), lambda: moment
    )


def consume(records: Any, events: list[Event], watcher: ReminderWatch) -> None:
    """Hand records' own chart events to the watch as the worker's consumer loop would."""
    handlers = watcher.handlers()
    for event in events:
        if event.type in handlers:
            origin = Origin(TOPIC_RECORDS, 0, 0)
            handle_once(records.sessions, "records", handlers[event.type], event, origin)


def test_a_patient_with_years_of_entries_sees_what_is_done_due_and_overdue(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    doctor = bearer(token("practitioner", "dr-lee", org="org-a"))
    records.write(me, patient, patient_resource("1974-03-02"))
    flu = records.write(doctor, patient, immunization("158", ago(60)))
    old_flu = records.write(doctor, patient, immunization("158", ago(430)))
    records.write(doctor, patient, immunization("115", ago(365 * 12)))
    records.write(me, patient, coded("Observation", LOINC, "85354-9", ago(395)))
    scope = records.write(doctor, patient, coded("Procedure", SNOMED, "73761001", ago(3 * 365)))
    records.write(doctor, patient, coded("DiagnosticReport", LOINC, "24606-6", ago(300)))

    response = records.client.get(f"/patients/{patient}/reminders", headers=me)

    assert response.get_json()["rule_set_version"] == rule_table().version
    found = by_rule(response)
    assert {rule: r["status"] for rule, r in found.items()} == {
        "influenza-yearly": "done",
        "td-tdap-10-years": "overdue",
        "zoster-from-50": "overdue",
        "pneumococcal-from-50": "overdue",
        "blood-pressure-40-plus": "due",
        "colorectal-cancer-screening": "done",
        "cervical-cancer-screening": "overdue",
        "breast-cancer-screening": "done",
        "lipid-screening": "overdue",
    }
    assert found["influenza-yearly"]["evidence"] == [flu, old_flu]
    assert found["influenza-yearly"]["due_date"] == (TODAY + timedelta(days=305)).isoformat()
    assert found["colorectal-cancer-screening"]["evidence"] == [scope]
    assert found["breast-cancer-screening"]["source"]["url"].startswith(
        "https://www.uspreventiveservicestaskforce.org/"
    )
    assert found["influenza-yearly"]["source"]["url"].startswith("https://www.cdc.gov/")


def test_a_reminder_falling_due_is_announced_once_on_kafka_and_a_new_shot_closes_it(
    records, kafka_tap, token
):
    chart_events = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    records.write(me, patient, patient_resource("2001-05-05", gender="male"))
    records.write(me, patient, immunization("115", ago(400)))
    records.publish()
    written = chart_events.events(2, where=lambda e: e.subject == patient)

    consume(records, written, watch())
    consume(records, written, watch())  # a redelivery changes nothing
    records.publish()

    due = chart_events.events(4, where=lambda e: e.subject == patient, settle_seconds=1.0)[2:]
    assert sorted(e.data["rule_id"] for e in due) == ["blood-pressure-18-39", "influenza-yearly"]
    for event in due:
        assert event.type == "caretrail.reminder.due.v1"
        assert event.actor == "system"
        assert set(event.data) == {"patient", "rule_id", "due_date", "rule_set_version"}
        assert event.data["rule_set_version"] == rule_table().version
    flu = [e for e in due if e.data["rule_id"] == "influenza-yearly"][0]
    assert flu.data["due_date"] == "2020-05-05"  # the day they turned 19: never had one

    shot = records.write(me, patient, immunization("150", TODAY.isoformat()))
    records.publish()
    consume(records, chart_events.events(5, where=lambda e: e.subject == patient)[4:], watch())

    flu_now = by_rule(records.client.get(f"/patients/{patient}/reminders", headers=me))[
        "influenza-yearly"
    ]
    assert (flu_now["status"], flu_now["evidence"]) == ("done", [shot])
    with records.sessions() as session:
        kept = session.execute(
            select(reminders.c.status).where(
                reminders.c.patient == patient, reminders.c.rule_id == "influenza-yearly"
            )
        ).scalar_one()
    assert kept == "done"
    records.publish()
    # The shot closed a reminder and announced nothing new.
    assert len(chart_events.events(where=lambda e: e.subject == patient, timeout_seconds=1)) == 5


def test_the_daily_sweep_announces_what_fell_due_with_the_passing_of_time(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    records.write(me, patient, patient_resource("1990-01-01", gender="male"))
    records.write(me, patient, immunization("150", TODAY.isoformat()))
    records.write(me, patient, immunization("115", TODAY.isoformat()))
    records.write(me, patient, coded("Observation", LOINC, "85354-9", TODAY.isoformat()))
    outbox_before = records.rows("outbox", type="caretrail.reminder.due.v1")

    assert watch().sweep(records.sessions, limit=10_000) >= 1
    assert watch().sweep(records.sessions, limit=10_000) == 0  # once a day
    nothing_due = records.rows("outbox", type="caretrail.reminder.due.v1")

    next_year = TODAY + timedelta(days=366)
    watch(next_year).sweep(records.sessions, limit=10_000)
    after_a_year = records.rows("outbox", type="caretrail.reminder.due.v1")

    assert nothing_due == outbox_before
    assert after_a_year - nothing_due >= 1
    with records.sessions() as session:
        told = session.execute(
            select(reminders.c.rule_id, reminders.c.announced_due).where(
                reminders.c.patient == patient, reminders.c.announced_due.is_not(None)
            )
        ).all()
    assert [rule for rule, _ in told] == ["influenza-yearly"]


def test_the_patient_snoozes_and_dismisses_and_no_one_else_may(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    doctor = bearer(token("practitioner", "dr-lee", org="org-a"))
    records.write(me, patient, patient_resource("1980-01-01", gender="male"))
    records.write(me, patient, immunization("115", ago(10)))
    base = f"/patients/{patient}/reminders"
    until = (TODAY + timedelta(days=14)).isoformat()

    snoozed = records.client.post(
        f"{base}/influenza-yearly/snooze", json={"until": until}, headers=me
    )
    dismissed = records.client.post(f"{base}/lipid-screening/dismiss", headers=me)

    assert snoozed.status_code == 200, snoozed.get_json()
    assert (snoozed.get_json()["status"], snoozed.get_json()["snoozed_until"]) == ("snoozed", until)
    assert dismissed.status_code == 204
    listed = by_rule(records.client.get(base, headers=me))
    assert listed["influenza-yearly"]["status"] == "snoozed"
    assert "lipid-screening" not in listed
    refusals = {
        "a practitioner snoozes": records.client.post(
            f"{base}/influenza-yearly/snooze", json={"until": until}, headers=doctor
        ),
        "an unknown rule": records.client.post(f"{base}/no-such-rule/dismiss", headers=me),
        "a day in the past": records.client.post(
            f"{base}/influenza-yearly/snooze", json={"until": ago(1)}, headers=me
        ),
        "not a date": records.client.post(
            f"{base}/influenza-yearly/snooze", json={"until": "soon"}, headers=me
        ),
        "a reminder that is done": records.client.post(
            f"{base}/td-tdap-10-years/snooze", json={"until": until}, headers=me
        ),
    }
    assert {k: r.status_code for k, r in refusals.items()} == {
        "a practitioner snoozes": 403,
        "an unknown rule": 404,
        "a day in the past": 422,
        "not a date": 422,
        "a reminder that is done": 409,
    }
    for response in refusals.values():
        assert response.content_type == "application/problem+json"


def test_a_practitioner_sees_reminders_only_under_consent_and_each_read_is_a_fact(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    doctor = bearer(token("practitioner", "dr-kim", org="org-b"))
    birth = records.write(me, patient, patient_resource("1970-01-01"))
    shot = records.write(me, patient, immunization("158", ago(30)))
    base = f"/patients/{patient}/reminders"

    refused = records.client.get(base, headers=doctor)
    records.project(consent_granted(patient, ("organization", "org-b"), categories=["*"]))
    allowed = records.client.get(base, headers=doctor)
    records.publish()

    assert refused.status_code == 403
    assert refused.content_type == "application/problem+json"
    assert by_rule(allowed)["influenza-yearly"]["evidence"] == [shot]
    facts = access.events(2, where=lambda e: e.subject == patient)
    assert [(e.type, e.data["outcome"]) for e in facts] == [
        ("caretrail.access.denied.v1", "deny"),
        ("caretrail.record.accessed.v1", "permit"),
    ]
    assert sorted(facts[1].data["record_ids"]) == sorted([birth, shot])
    assert facts[1].data["actor"] == "practitioner:dr-kim"
    assert facts[1].data["consent_ids"]


def test_erasing_the_chart_forgets_its_reminders_and_the_choices_made(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient, patient=patient))
    records.write(me, patient, patient_resource("1980-01-01", gender="male"))
    records.client.post(f"/patients/{patient}/reminders/lipid-screening/dismiss", headers=me)
    watch().sweep(records.sessions, limit=10_000)
    assert records.rows("reminders", patient=patient) > 1

    assert records.client.delete(f"/patients/{patient}", headers=me).status_code == 204

    assert records.rows("reminders", patient=patient) == 0
    assert records.rows("reminder_charts", patient=patient) == 0
    assert records.client.get(f"/patients/{patient}/reminders", headers=me).status_code == 410
