"""Who may read which record, and what the access event says about it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.records.domain import (
    Access,
    Reader,
    Record,
    Verdict,
    access_event,
    chart_refusal,
    reader_from_headers,
    verdict,
)
from shared.auth import Principal, Scope
from shared.break_glass import CODES as BREAK_GLASS_CODES
from shared.consent_rules import ConsentTerms
from shared.errors import InvalidInput

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
PATIENT = "pat-1"


def principal(role: str, sub: str, scope: str, **claims: str) -> Principal:
    scopes = tuple(s for s in (Scope.parse(t) for t in scope.split()) if s)
    return Principal(sub=sub, role=role, scopes=scopes, **claims)


PATIENT_SELF = principal("patient", PATIENT, "patient/*.rs", patient=PATIENT)
DOCTOR_B = principal("practitioner", "dr-b", "user/*.rs", org="org-b")


def record(*labels: str, category: str = "Observation", author_org: str = "org-a") -> Record:
    return Record(
        id="rec-1",
        patient=PATIENT,
        category=category,
        source="ehr",
        author="practitioner:dr-a",
        author_org=author_org,
        security=frozenset(labels),
        version=1,
        status="current",
        created_at=NOW,
        updated_at=NOW,
    )


def consent(**changes: object) -> ConsentTerms:
    terms: dict[str, object] = {
        "id": "con-1",
        "patient": PATIENT,
        "grantee_type": "organization",
        "grantee_id": "org-b",
        "actions": frozenset({"read"}),
        "categories": frozenset({"Observation"}),
        "security_labels": frozenset(),
        "purposes": frozenset({"TREAT"}),
        "start": NOW - timedelta(days=1),
        "end": NOW + timedelta(days=1),
    }
    return ConsentTerms(**{**terms, **changes})  # type: ignore[arg-type]


def test_the_patient_reads_every_record_of_their_chart():
    assert verdict(Reader(PATIENT_SELF), record("PSY", "HIV"), [], at=NOW).permit


@pytest.mark.parametrize(
    ("reader", "refusal"),
    [
        (principal("patient", "pat-2", "patient/*.rs", patient="pat-2"), "own chart"),
        (principal("compliance", "aud", "user/AuditEvent.rs"), "never reads"),
        (principal("admin", "root", "system/*.cruds"), "never reads"),
    ],
)
def test_others_than_the_patient_and_practitioners_read_nothing_of_a_chart(reader, refusal):
    assert refusal in (chart_refusal(Reader(reader), PATIENT) or "")


def test_only_practitioners_may_break_the_glass():
    assert chart_refusal(Reader(PATIENT_SELF, "ETREAT", "OVRER"), PATIENT) == (
        "only practitioners may break the glass"
    )
    breaking = Reader(DOCTOR_B, "ETREAT", "OVRER")
    assert chart_refusal(breaking, PATIENT) is None
    assert verdict(breaking, record("PSY"), [], at=NOW) == Verdict(True, "break_glass")


def test_the_authoring_organization_reads_its_own_entries_without_consent():
    colleague = principal("practitioner", "dr-a2", "user/*.rs", org="org-a")
    assert verdict(Reader(colleague), record("PSY"), [], at=NOW).basis == "author_org"


def test_another_organization_needs_a_consent_covering_every_label_and_the_purpose():
    reader = Reader(DOCTOR_B)
    assert not verdict(reader, record(), [], at=NOW).permit
    assert verdict(reader, record(), [consent()], at=NOW).consent_ids == ("con-1",)
    assert not verdict(reader, record("PSY"), [consent()], at=NOW).permit
    psy = consent(security_labels=frozenset({"PSY"}))
    assert verdict(reader, record("PSY"), [psy], at=NOW).permit
    research = Reader(DOCTOR_B, "HRESCH")
    assert "HRESCH" in (verdict(research, record(), [consent()], at=NOW).reason or "")
    assert not verdict(reader, record(), [consent(status="revoked")], at=NOW).permit
    assert not verdict(reader, record(), [consent()], at=NOW + timedelta(days=2)).permit


def test_scopes_bound_every_basis_and_must_be_in_the_roles_context():
    narrow = principal("practitioner", "dr-b", "user/Condition.rs", org="org-b")
    assert not verdict(Reader(narrow, "ETREAT", "OVRER"), record(), [consent()], at=NOW).permit
    misplaced = principal("patient", PATIENT, "user/*.rs", patient=PATIENT)
    assert not verdict(Reader(misplaced), record(), [], at=NOW).permit
    listing_only = principal("patient", PATIENT, "patient/Observation.s", patient=PATIENT)
    assert not verdict(Reader(listing_only), record(), [], at=NOW).permit
    assert verdict(Reader(listing_only), record(), [], at=NOW, permission="s").permit


def test_reader_headers_default_the_purpose_and_refuse_unknown_ones():
    assert reader_from_headers(DOCTOR_B, None, None).purpose == "TREAT"
    assert reader_from_headers(DOCTOR_B, None, "  OVRER  ") == Reader(DOCTOR_B, "ETREAT", "OVRER")
    assert reader_from_headers(DOCTOR_B, "HPAYMT", "OVRER").purpose == "HPAYMT"
    for purpose, reason in (("GOSSIP", None), ("TREAT", ""), ("TREAT", "x" * 501)):
        with pytest.raises(InvalidInput):
            reader_from_headers(DOCTOR_B, purpose, reason)


def test_a_break_glass_reason_is_a_code_of_the_value_set_and_the_refusal_names_them():
    with pytest.raises(InvalidInput) as refused:
        reader_from_headers(DOCTOR_B, None, "unconscious patient, suspected overdose")
    assert all(code in refused.value.detail for code in BREAK_GLASS_CODES)
    assert "overdose" not in refused.value.detail  # what was sent is not repeated
    for code in ("OVRER", "patient-unreachable", "consent-not-recorded", "OVRPS"):
        assert reader_from_headers(DOCTOR_B, None, code).break_glass_reason == code


def test_a_break_glass_note_is_stripped_text_of_1_to_500_characters_beside_a_reason():
    reader = reader_from_headers(DOCTOR_B, None, "OVRER", "  found unconscious  ")
    assert (reader.break_glass_reason, reader.break_glass_note) == ("OVRER", "found unconscious")
    assert reader_from_headers(DOCTOR_B, None, "OVRER", "x" * 500).break_glass_note == "x" * 500
    for note in ("   ", "x" * 501):
        with pytest.raises(InvalidInput, match="X-Break-Glass-Note"):
            reader_from_headers(DOCTOR_B, None, "OVRER", note)
    with pytest.raises(InvalidInput, match="needs an X-Break-Glass-Reason"):
        reader_from_headers(DOCTOR_B, None, None, "found unconscious")


def test_the_reason_other_needs_a_note():
    with pytest.raises(InvalidInput, match="other needs an X-Break-Glass-Note"):
        reader_from_headers(DOCTOR_B, None, "other")
    assert reader_from_headers(DOCTOR_B, None, "other", "ward fire").break_glass_note == "ward fire"


def test_a_readers_note_stays_out_of_its_repr():
    reader = reader_from_headers(DOCTOR_B, None, "OVRER", "HIV positive, overdose")
    assert "overdose" not in repr(reader)


def test_a_search_that_withheld_everything_it_found_is_a_denial():
    withheld = [Verdict(False, reason="consent con-1 does not name the label(s) PSY")]
    assert Access.of("search", [], withheld).event_type == "access.denied"
    assert Access.of("search", [], []).event_type == "record.accessed"
    shown = [(record(), Verdict(True, "consent", ("con-1",)))]
    some = Access.of("export", shown, withheld)
    assert (some.event_type, some.record_ids, some.consent_ids) == (
        "record.exported",
        ("rec-1",),
        ("con-1",),
    )
    assert some.reason == "1 record(s) withheld"


def test_an_access_event_names_who_what_why_and_the_outcome_and_nothing_clinical():
    reader = Reader(DOCTOR_B, "ETREAT", "OVRER", "HIV positive, overdose")
    access = Access("read", True, ("rec-1",), ("Observation",), ())

    event = access_event(reader, PATIENT, access, "key.nonce.sealed")

    assert event.short_type == "record.accessed"
    assert event.subject == PATIENT and event.actor == "practitioner:dr-b"
    assert event.data["org"] == "org-b"
    assert event.data["break_glass_reason"] == "OVRER"
    assert event.data["break_glass_note"] == "key.nonce.sealed"  # only ever sealed
    assert "overdose" not in json.dumps(event.data)
    assert set(event.data) == {
        "patient",
        "actor",
        "role",
        "org",
        "action",
        "record_ids",
        "categories",
        "purpose",
        "consent_ids",
        "break_glass_reason",
        "break_glass_note",
        "outcome",
        "reason",
    }
    assert "resource" not in json.dumps(event.data)
