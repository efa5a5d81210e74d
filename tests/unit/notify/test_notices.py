"""Which facts a patient hears about, and what the notification says."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain import (
    ACCESS_DENIED,
    BREAK_GLASS,
    CONSENT_EXPIRED,
    CONSENT_EXPIRING,
    CONSENT_GRANTED,
    CONSENT_REVOKED,
    RECORD_ACCESSED,
    RECORD_ADDED,
    REMINDER_DUE,
    ConsentWindow,
    expiring_notice,
    notice_for,
)
from shared.break_glass import BY_CODE
from shared.events import new_event
from tests.unit.notify import facts

P = "p-1"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_a_read_by_a_practitioner_says_who_which_org_what_why_and_under_which_consent():
    notice = notice_for(facts.access(P, record_ids=("r-1", "r-2"), consent_ids=("c-7",)))
    assert notice is not None
    assert notice.kind == RECORD_ACCESSED and notice.patient == P and not notice.urgent
    assert notice.title == "Your records were read"
    assert notice.body == (
        "practitioner dr-lee of org-a read 2 records (Observation) for treatment under consent c-7."
    )
    assert notice.details["record_ids"] == ["r-1", "r-2"]
    assert notice.details["consent_ids"] == ["c-7"]


def test_an_export_says_exported():
    notice = notice_for(facts.access(P, action="export", categories=("Condition", "Observation")))
    assert notice is not None and notice.kind == RECORD_ACCESSED
    assert "exported 1 record (Condition, Observation)" in notice.body


def test_a_break_glass_read_is_urgent_and_says_the_reason_in_words_but_never_the_note():
    note, sealed = "unconscious, suspected overdose, HIV+", "key-1.bm9uY2U.c2VhbGVkIG5vdGU"
    event = facts.access(
        P, purpose="ETREAT", consent_ids=(), break_glass_reason="OVRER", break_glass_note=sealed
    )
    notice = notice_for(event)
    assert notice is not None
    assert notice.kind == BREAK_GLASS and notice.urgent
    assert "emergency (break-the-glass) access" in notice.body
    assert "emergency treatment" in notice.body
    assert BY_CODE["OVRER"].display in notice.body
    assert notice.details["break_glass_reason"] == "OVRER"
    told = notice.body + notice.title + json.dumps(notice.details)
    assert note not in told and "overdose" not in told
    assert sealed not in told and "c2VhbGVk" not in told


def test_a_break_glass_read_of_before_reasons_were_coded_does_not_repeat_the_free_text():
    event = facts.access(
        P, purpose="ETREAT", consent_ids=(), break_glass_reason="unconscious, suspected overdose"
    )
    notice = notice_for(event)
    assert notice is not None and notice.kind == BREAK_GLASS
    assert notice.details["break_glass_reason"] is None
    assert "overdose" not in notice.body + notice.title + str(notice.details)


def test_a_refused_read_says_who_asked_for_what():
    notice = notice_for(
        facts.access(
            P,
            actor="practitioner:dr-x",
            org="org-b",
            outcome="deny",
            record_ids=(),
            categories=(),
            consent_ids=(),
            reason="consent c-1 does not name the label(s) HIV",
        )
    )
    assert notice is not None and notice.kind == ACCESS_DENIED
    assert notice.body == (
        "practitioner dr-x of org-b asked to read your records for treatment and was refused."
    )
    assert "HIV" not in str(notice)


def test_a_permitted_search_that_showed_nothing_is_not_worth_telling():
    assert notice_for(facts.access(P, action="search", record_ids=(), categories=())) is None


@pytest.mark.parametrize(
    "event",
    [
        facts.access(P, actor=f"patient:{P}", role="patient", org=None, consent_ids=()),
        facts.access(P, actor="patient:alice", role="patient", org=None, consent_ids=()),
        facts.record_created(P, source="phr"),
        facts.consent_granted(P, actor=f"patient:{P}"),
        facts.consent_ended("consent.revoked", P, actor=f"patient:{P}"),
        facts.consent_granted(P, actor="patient:alice"),
        facts.consent_ended("consent.revoked", P, actor="patient:alice"),
    ],
    ids=[
        "own read",
        "own read under another subject",
        "own record",
        "own grant",
        "own revoke",
        "own grant under another subject",
        "own revoke under another subject",
    ],
)
def test_the_patients_own_actions_notify_nobody(event):
    assert notice_for(event) is None


def test_another_patient_refused_on_this_chart_is_told():
    event = facts.access(
        P, actor="patient:p-2", role="patient", org=None, outcome="deny", consent_ids=()
    )
    notice = notice_for(event)
    assert notice is not None and notice.kind == ACCESS_DENIED


def test_a_record_added_by_a_provider_names_the_author_category_and_id_but_no_content():
    notice = notice_for(facts.record_created(P, category="Condition"))
    assert notice is not None and notice.kind == RECORD_ADDED
    assert notice.body == (
        "practitioner dr-lee of org-a added a record to your chart (Condition, r-9)."
    )
    assert "c2VjcmV0" not in str(notice)


def test_a_consent_granted_for_the_patient_by_an_admin_says_to_whom_what_and_until_when():
    event = facts.consent_granted(P, ends_at=datetime(2025, 9, 1, tzinfo=UTC))
    notice = notice_for(event)
    assert notice is not None and notice.kind == CONSENT_GRANTED
    assert notice.body == (
        "Consent c-1 lets practitioner dr-lee read your records (Condition, Observation) "
        "for treatment until 2025-09-01 00:00 UTC."
    )


def test_security_labels_of_a_consent_are_not_spelled_out():
    notice = notice_for(facts.consent_granted(P, security_labels=("HIV",)))
    assert notice is not None and "HIV" not in str(notice)


@pytest.mark.parametrize(
    ("short", "kind", "says"),
    [
        ("consent.revoked", CONSENT_REVOKED, "was revoked"),
        ("consent.expired", CONSENT_EXPIRED, "has expired"),
    ],
)
def test_a_consent_that_ends_names_its_grantee_when_notify_knows_it(short, kind, says):
    consent = ConsentWindow("c-1", P, "organization", "org-a", NOW)
    notice = notice_for(facts.consent_ended(short, P), consent=consent)
    assert notice is not None and notice.kind == kind
    assert notice.body.startswith(f"Consent c-1 (organization org-a) {says}")


def test_a_consent_ending_within_seven_days_is_warned_of_once():
    consent = ConsentWindow("c-1", P, "practitioner", "dr-lee", NOW + timedelta(days=6))
    notice = expiring_notice(consent, NOW)
    assert notice is not None and notice.kind == CONSENT_EXPIRING
    assert notice.source_event_id == "consent-expiring:c-1"
    assert "ends on 2025-06-07 12:00 UTC" in notice.body


@pytest.mark.parametrize(
    ("ends_in", "status"),
    [(timedelta(days=8), "active"), (-timedelta(hours=1), "active"), (timedelta(1), "revoked")],
    ids=["too far", "already ended", "revoked"],
)
def test_no_expiry_warning_outside_the_window_or_for_an_ended_consent(ends_in, status):
    consent = ConsentWindow("c-1", P, "practitioner", "dr-lee", NOW + ends_in, status)
    assert expiring_notice(consent, NOW) is None


def test_amendments_of_records_are_not_notified():
    event = facts.record_created(P)
    amended = replace(event, type="caretrail.record.amended.v1")
    assert notice_for(amended) is None


def test_a_reminder_falling_due_says_only_that_one_is_due_and_when():
    event = new_event(
        "reminder.due",
        source_service="records",
        subject=P,
        actor="system",
        data={
            "patient": P,
            "rule_id": "breast-cancer-screening",
            "due_date": "2026-03-01",
            "rule_set_version": "2026-12-02",
        },
    )
    notice = notice_for(event)
    assert notice is not None and notice.kind == REMINDER_DUE
    assert notice.body == "A preventive-care reminder is due: open your app"
    assert dict(notice.details) == {"due_date": "2026-03-01"}
    assert "breast" not in str(notice)
