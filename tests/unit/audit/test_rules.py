"""Who may read the trail, what counts as a disclosure, how break-glass is reviewed."""

from datetime import UTC, datetime

import pytest

from services.audit.domain import (
    actor_names,
    disclosure_since,
    entry_of,
    is_disclosure,
    review_break_glass,
    trail_scope,
)
from shared.auth import Principal, Scope
from shared.errors import InvalidInput, PermissionDenied
from shared.inbox import Origin
from tests.unit.audit.facts import access

ALL = (Scope.parse("user/*.cruds"),)
COMPLIANCE = Principal("officer", "compliance", (Scope.parse("user/AuditEvent.rs"),))
PATIENT = Principal("p-1", "patient", (Scope.parse("patient/*.cruds"),), patient="p-1")
PRACTITIONER = Principal("dr-lee", "practitioner", ALL, org="org-a")
ADMIN = Principal("root", "admin", (Scope.parse("system/*.cruds"),))


def entry(event):
    return entry_of(event, Origin("caretrail.access.v1", 0, 0))


def test_compliance_searches_any_patient_and_a_patient_only_their_own():
    assert trail_scope(COMPLIANCE, None) is None
    assert trail_scope(COMPLIANCE, "p-9") == "p-9"
    assert trail_scope(PATIENT, None) == "p-1"
    assert trail_scope(PATIENT, "p-1") == "p-1"
    with pytest.raises(PermissionDenied):
        trail_scope(PATIENT, "p-2")


@pytest.mark.parametrize("principal", [PRACTITIONER, ADMIN])
def test_practitioners_and_admins_may_not_search_the_trail(principal):
    with pytest.raises(PermissionDenied):
        trail_scope(principal, None)


def test_a_compliance_token_without_an_audit_scope_may_not_search():
    with pytest.raises(PermissionDenied):
        trail_scope(Principal("officer", "compliance", ()), None)


def test_reads_by_others_are_disclosures_and_the_patients_own_are_not():
    assert is_disclosure(entry(access("p-1", actor="practitioner:dr-lee")), "p-1")
    assert is_disclosure(entry(access("p-1", actor="practitioner:dr-x", outcome="deny")), "p-1")
    assert is_disclosure(entry(access("p-1", actor="patient:p-2", outcome="deny")), "p-1")
    assert not is_disclosure(entry(access("p-1", actor="patient:p-1")), "p-1")
    # A patient token's subject need not be the patient id; records permits only the owner.
    assert not is_disclosure(entry(access("p-1", actor="patient:login-77")), "p-1")
    assert not is_disclosure(entry(access("p-2", actor="practitioner:dr-lee")), "p-1")


def test_the_accounting_goes_six_years_back_unless_told_otherwise():
    now = datetime(2030, 5, 4, 12, 0, tzinfo=UTC)
    assert disclosure_since(now, None) == datetime(2024, 5, 4, 12, 0, tzinfo=UTC)
    assert disclosure_since(datetime(2028, 2, 29, tzinfo=UTC), None) == datetime(
        2022, 2, 28, tzinfo=UTC
    )
    assert disclosure_since(now, datetime(2030, 1, 1, tzinfo=UTC)) == datetime(
        2030, 1, 1, tzinfo=UTC
    )


def test_compliance_reviews_a_break_glass_access():
    event = access("p-1", actor="practitioner:dr-lee", break_glass_reason="OVRER")
    now = datetime.now(UTC)

    review = review_break_glass(
        entry(event), decision="justified", note="ER", by=COMPLIANCE, now=now
    )

    assert (review.entry_id, review.patient, review.reviewer) == (
        event.id,
        "p-1",
        "compliance:officer",
    )


def test_only_break_glass_accesses_are_reviewed_and_only_by_compliance():
    ordinary = entry(access("p-1", actor="practitioner:dr-lee"))
    emergency = entry(access("p-1", actor="practitioner:dr-lee", break_glass_reason="OVRER"))
    now = datetime.now(UTC)

    with pytest.raises(InvalidInput):
        review_break_glass(ordinary, decision="justified", note=None, by=COMPLIANCE, now=now)
    with pytest.raises(PermissionDenied):
        review_break_glass(emergency, decision="justified", note=None, by=PRACTITIONER, now=now)


def test_an_actor_filter_means_the_named_actor_or_a_subject_in_any_role():
    assert actor_names("practitioner:dr-lee") == ("practitioner:dr-lee",)
    assert actor_names("practitioner:urn:org-a:dr-lee") == ("practitioner:urn:org-a:dr-lee",)
    assert set(actor_names("dr-lee")) == {
        "dr-lee",
        "patient:dr-lee",
        "practitioner:dr-lee",
        "compliance:dr-lee",
        "admin:dr-lee",
    }
    assert "practitioner:urn:org-a:dr-lee" in actor_names("urn:org-a:dr-lee")
    assert "system" in actor_names("system")


@pytest.mark.parametrize("note", [None, "", "   "])
def test_a_review_without_a_note_saying_why_is_refused(note):
    emergency = entry(access("p-1", actor="practitioner:dr-lee", break_glass_reason="OVRER"))

    with pytest.raises(InvalidInput, match="note"):
        review_break_glass(
            emergency, decision="justified", note=note, by=COMPLIANCE, now=datetime.now(UTC)
        )
