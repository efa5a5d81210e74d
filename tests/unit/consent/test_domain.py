"""The consent aggregate: grants, revocation, expiry, and who may do what. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.consent.domain import (
    ConsentExpired,
    ConsentGranted,
    ConsentRevoked,
    ExpireConsent,
    GrantConsent,
    Grantee,
    Period,
    RevokeConsent,
    apply,
    ensure_may_ask,
    ensure_may_read,
    expire,
    fold,
    grant,
    grantees_visible_to,
    revoke,
    revoke_on_erasure,
)
from shared.auth import Principal
from shared.errors import InvalidInput, PermissionDenied

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
ALICE = Principal(sub="alice", role="patient", patient="p-alice")
BOB = Principal(sub="bob", role="patient", patient="p-bob")
ADMIN = Principal(sub="ops", role="admin")
DR_LEE = Principal(sub="dr-lee", role="practitioner", org="org-a")


def a_grant(**overrides: object) -> GrantConsent:
    values: dict[str, object] = {
        "consent_id": "c-1",
        "patient": "p-alice",
        "grantee": Grantee("practitioner", "dr-lee"),
        "actions": frozenset({"read"}),
        "categories": frozenset({"Observation", "Condition"}),
        "security_labels": frozenset({"PSY"}),
        "purposes": frozenset({"TREAT"}),
        "start": None,
        "end": NOW + timedelta(days=30),
        "at": NOW,
        "by": ALICE,
    }
    values.update(overrides)
    return GrantConsent(**values)  # type: ignore[arg-type]


def granted(**overrides: object) -> ConsentGranted:
    return grant(a_grant(**overrides))


def test_a_grant_starts_now_when_no_start_is_given_and_lists_its_terms_in_order():
    event = granted()
    assert event.version == 1
    assert event.period.start == NOW
    assert event.categories == ("Condition", "Observation")
    assert event.by == "patient:alice"


def test_a_grant_keeps_its_period_in_utc():
    paris = timezone(timedelta(hours=2))
    event = granted(
        start=datetime(2030, 6, 1, 9, 0, tzinfo=paris), end=datetime(2030, 7, 1, tzinfo=paris)
    )
    assert event.period == Period(
        datetime(2030, 6, 1, 7, 0, tzinfo=UTC), datetime(2030, 6, 30, 22, 0, tzinfo=UTC)
    )
    assert event.period.start.utcoffset() == timedelta(0)


def test_a_granted_consent_is_active_at_version_one():
    consent = fold([granted()])
    assert consent is not None
    assert (consent.status, consent.version, consent.etag) == ("active", 1, '"1"')
    assert consent.terms().categories == frozenset({"Condition", "Observation"})


def test_revoking_an_active_consent_makes_it_revoked_at_the_next_version():
    consent = apply(None, granted())
    events = revoke(consent, RevokeConsent("c-1", NOW + timedelta(hours=1), ALICE))
    assert events == (
        ConsentRevoked("c-1", "p-alice", 2, NOW + timedelta(hours=1), "patient:alice"),
    )
    after = fold([granted(), *events])
    assert after is not None and (after.status, after.version) == ("revoked", 2)


def test_revoking_a_revoked_consent_changes_nothing():
    revoked = fold([granted(), ConsentRevoked("c-1", "p-alice", 2, NOW, "patient:alice")])
    assert revoked is not None
    assert revoke(revoked, RevokeConsent("c-1", NOW, ALICE)) == ()


def test_a_revoked_consent_cannot_be_revived_or_expired_or_granted_again():
    revoked = fold([granted(), ConsentRevoked("c-1", "p-alice", 2, NOW, "patient:alice")])
    assert revoked is not None
    assert expire(revoked, ExpireConsent("c-1", NOW + timedelta(days=60))) == ()
    with pytest.raises(ValueError):
        apply(revoked, granted())


def test_a_consent_expires_only_once_its_period_has_ended():
    consent = apply(None, granted())
    end = consent.period.end
    assert expire(consent, ExpireConsent("c-1", end - timedelta(seconds=1))) == ()
    events = expire(consent, ExpireConsent("c-1", end))
    assert events == (ConsentExpired("c-1", "p-alice", 2, end),)
    expired = fold([granted(), *events])
    assert expired is not None and expired.status == "expired"
    assert expire(expired, ExpireConsent("c-1", end + timedelta(days=1))) == ()
    assert revoke(expired, RevokeConsent("c-1", end, ALICE)) == ()


def test_events_out_of_order_are_refused():
    with pytest.raises(ValueError):
        fold([granted(), ConsentRevoked("c-1", "p-alice", 3, NOW, "patient:alice")])
    with pytest.raises(ValueError):
        apply(None, ConsentRevoked("c-1", "p-alice", 2, NOW, "patient:alice"))


@pytest.mark.parametrize(
    ("case", "overrides", "field"),
    [
        (
            "end before start",
            {"start": NOW + timedelta(days=2), "end": NOW + timedelta(days=1)},
            "period",
        ),
        (
            "end equal to start",
            {"start": NOW + timedelta(days=1), "end": NOW + timedelta(days=1)},
            "period",
        ),
        (
            "period in the past",
            {"start": NOW - timedelta(days=9), "end": NOW - timedelta(days=1)},
            "period",
        ),
        ("ends right now", {"end": NOW, "start": NOW - timedelta(days=1)}, "period"),
        ("no action", {"actions": frozenset()}, "actions"),
        ("no category", {"categories": frozenset()}, "categories"),
        ("no purpose", {"purposes": frozenset()}, "purposes"),
        ("patient id not a FHIR id", {"patient": "a b", "by": ADMIN}, "patient"),
        ("patient id with a newline", {"patient": "p-alice\n", "by": ADMIN}, "patient"),
    ],
)
def test_a_grant_the_patient_could_not_mean_is_refused(case, overrides, field):
    with pytest.raises(InvalidInput) as refused:
        grant(a_grant(**overrides))
    assert field in refused.value.errors


def test_a_patient_grants_on_their_own_chart_only_and_an_admin_on_any():
    with pytest.raises(PermissionDenied):
        grant(a_grant(by=BOB))
    with pytest.raises(PermissionDenied):
        grant(a_grant(by=DR_LEE))
    assert grant(a_grant(by=ADMIN)).by == "admin:ops"


def test_only_the_patient_or_an_admin_revokes():
    consent = apply(None, granted())
    for intruder in (BOB, DR_LEE):
        with pytest.raises(PermissionDenied):
            revoke(consent, RevokeConsent("c-1", NOW, intruder))
    assert revoke(consent, RevokeConsent("c-1", NOW, ADMIN))[0].by == "admin:ops"


def test_erasure_revokes_an_active_consent_as_the_system_and_leaves_others_be():
    consent = apply(None, granted())
    (event,) = revoke_on_erasure(consent, NOW)
    assert (event.by, event.version) == ("system", 2)
    assert revoke_on_erasure(apply(consent, event), NOW) == ()


def test_a_practitioner_reads_the_consents_naming_them_or_their_org_only():
    assert grantees_visible_to(ALICE, "p-alice") is None
    assert grantees_visible_to(ADMIN, "p-alice") is None
    assert grantees_visible_to(DR_LEE, "p-alice") == (
        Grantee("practitioner", "dr-lee"),
        Grantee("organization", "org-a"),
    )
    for stranger in (BOB, Principal(sub="cora", role="compliance")):
        with pytest.raises(PermissionDenied):
            grantees_visible_to(stranger, "p-alice")
    to_org = apply(None, granted(grantee=Grantee("organization", "org-a")))
    ensure_may_read(DR_LEE, to_org)
    to_other = apply(None, granted(grantee=Grantee("organization", "org-b")))
    with pytest.raises(PermissionDenied):
        ensure_may_read(DR_LEE, to_other)


def test_practitioners_ask_about_themselves_and_admins_about_anyone():
    ensure_may_ask(DR_LEE, "dr-lee", "org-a")
    ensure_may_ask(ADMIN, "dr-who", "org-b")
    for practitioner, org in (("dr-who", "org-a"), ("dr-lee", "org-b"), ("dr-lee", None)):
        with pytest.raises(PermissionDenied):
            ensure_may_ask(DR_LEE, practitioner, org)
    with pytest.raises(PermissionDenied):
        ensure_may_ask(ALICE, "dr-lee", "org-a")
