"""Who writes to a chart, and how a record changes: versions and errors, never deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.records.domain import may_erase, new_record, patient_id
from shared.auth import Principal, Scope
from shared.errors import Conflict, InvalidInput, PermissionDenied, PreconditionFailed

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def principal(role: str, sub: str, scope: str = "user/*.cruds", **claims: str) -> Principal:
    return Principal(sub, role, (Scope.parse(scope),), **claims)  # type: ignore[arg-type]


PATIENT = principal("patient", "pat-1", "patient/*.cruds", patient="pat-1")
DOCTOR = principal("practitioner", "dr-a", org="org-a")


def test_a_patient_writes_phr_entries_and_a_practitioner_ehr_entries_for_their_org():
    phr = new_record(PATIENT, patient="pat-1", category="Observation", security=frozenset(), at=NOW)
    ehr = new_record(DOCTOR, patient="pat-1", category="Condition", security=frozenset(), at=NOW)
    assert (phr.source, phr.author, phr.author_org) == ("phr", "patient:pat-1", None)
    assert (ehr.source, ehr.author, ehr.author_org) == ("ehr", "practitioner:dr-a", "org-a")


@pytest.mark.parametrize(
    "writer",
    [
        principal("patient", "pat-2", "patient/*.cruds", patient="pat-2"),
        principal("compliance", "aud"),
        principal("admin", "root", "system/*.cruds"),
    ],
)
def test_nobody_else_writes_to_a_chart(writer):
    with pytest.raises(PermissionDenied):
        new_record(writer, patient="pat-1", category="Observation", security=frozenset(), at=NOW)


def test_only_the_author_amends_and_an_amendment_is_the_next_version():
    record = new_record(
        DOCTOR, patient="pat-1", category="Observation", security=frozenset(), at=NOW
    )
    later = NOW + timedelta(hours=1)

    amended = record.amended(
        by=DOCTOR, category="Observation", security=frozenset({"PSY"}), at=later
    )

    assert (amended.version, amended.security, amended.updated_at) == (2, {"PSY"}, later)
    assert amended.created_at == NOW
    colleague = principal("practitioner", "dr-a2", org="org-a")
    with pytest.raises(PermissionDenied):
        record.amended(by=colleague, category="Observation", security=frozenset(), at=later)
    with pytest.raises(InvalidInput):
        record.amended(by=DOCTOR, category="Condition", security=frozenset(), at=later)
    with pytest.raises(PreconditionFailed):
        amended.amended(
            by=DOCTOR, category="Observation", security=frozenset(), at=later, expected_version=1
        )


def test_a_record_entered_in_error_is_marked_once_and_no_longer_amended():
    record = new_record(
        PATIENT, patient="pat-1", category="Observation", security=frozenset(), at=NOW
    )

    marked = record.entered_in_error(by=PATIENT, at=NOW)

    assert marked.status == "entered-in-error" and marked.version == 1
    with pytest.raises(Conflict):
        marked.entered_in_error(by=PATIENT, at=NOW)
    with pytest.raises(Conflict):
        marked.amended(by=PATIENT, category="Observation", security=frozenset(), at=NOW)


def test_the_patient_or_an_admin_erases_a_chart():
    may_erase(PATIENT, "pat-1")
    may_erase(principal("admin", "root", "system/*.cruds"), "pat-1")
    for other in (DOCTOR, principal("compliance", "aud"), PATIENT):
        with pytest.raises(PermissionDenied):
            may_erase(other, "pat-2")


@pytest.mark.parametrize("text", ["", "../etc", "a b", "x" * 129, "'; DROP TABLE records;--"])
def test_patient_ids_are_plain_identifiers(text):
    with pytest.raises(InvalidInput):
        patient_id(text)
