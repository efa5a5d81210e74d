"""Properties of THE consent rule, `shared.consent_rules.decide` (used by consent and records).

The oracle `covers` below spells the rule out independently of the implementation: a consent
covers a request when it names this patient and this practitioner (or their organization), is
active, is in its period, and allows the action, the category, every label and the purpose.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.consent_rules import AccessRequest, ConsentTerms, decide, why_not
from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS

NOW = datetime(2030, 1, 1, tzinfo=UTC)

patients = st.sampled_from(["p-1", "p-2"])
practitioners = st.sampled_from(["dr-lee", "dr-who"])
orgs = st.sampled_from(["org-a", "org-b"])
categories = st.sampled_from(CATEGORIES)
labels = st.frozensets(st.sampled_from(SECURITY_LABELS), max_size=3)
purposes = st.sampled_from(PURPOSES)
moments = st.integers(min_value=-5, max_value=5).map(lambda d: NOW + timedelta(days=d))


@st.composite
def consent_terms(draw: st.DrawFn, status: st.SearchStrategy[str] | None = None) -> ConsentTerms:
    grantee_type = draw(st.sampled_from(["practitioner", "organization"]))
    start = draw(moments)
    return ConsentTerms(
        id=f"c-{draw(st.integers(0, 10_000))}",
        patient=draw(patients),
        grantee_type=grantee_type,
        grantee_id=draw(practitioners if grantee_type == "practitioner" else orgs),
        actions=frozenset({"read"}),
        categories=draw(
            st.one_of(st.just(frozenset({"*"})), st.frozensets(categories, min_size=1))
        ),
        security_labels=draw(labels),
        purposes=draw(st.frozensets(purposes, min_size=1)),
        start=start,
        end=start + timedelta(days=draw(st.integers(1, 6))),
        status=draw(status or st.sampled_from(["active", "active", "revoked", "expired"])),
    )


@st.composite
def access_requests(draw: st.DrawFn) -> AccessRequest:
    return AccessRequest(
        patient=draw(patients),
        practitioner=draw(practitioners),
        org=draw(st.one_of(st.none(), orgs)),
        action="read",
        category=draw(categories),
        security_labels=draw(labels),
        purpose=draw(purposes),
        at=draw(moments),
    )


@st.composite
def covering(draw: st.DrawFn, request: AccessRequest) -> ConsentTerms:
    """A consent made to cover `request` (so that permits are common enough to test)."""
    by_org = request.org is not None and draw(st.booleans())
    extra_labels = draw(labels)
    return ConsentTerms(
        id=f"c-{draw(st.integers(0, 10_000))}",
        patient=request.patient,
        grantee_type="organization" if by_org else "practitioner",
        grantee_id=(request.org or "") if by_org else request.practitioner,
        actions=frozenset({"read"}),
        categories=draw(st.sampled_from([frozenset({"*"}), frozenset({request.category})])),
        security_labels=request.security_labels | extra_labels,
        purposes=frozenset({request.purpose}),
        start=request.at - timedelta(days=draw(st.integers(0, 3))),
        end=request.at + timedelta(days=draw(st.integers(1, 3))),
    )


consent_lists = st.lists(consent_terms(), max_size=6)


def covers(consent: ConsentTerms, request: AccessRequest) -> bool:
    grantee = (
        consent.grantee_id == request.practitioner
        if consent.grantee_type == "practitioner"
        else consent.grantee_id == request.org
    )
    return (
        consent.patient == request.patient
        and grantee
        and consent.status == "active"
        and consent.start <= request.at < consent.end
        and request.action in consent.actions
        and (request.category in consent.categories or "*" in consent.categories)
        and request.security_labels <= consent.security_labels
        and request.purpose in consent.purposes
    )


@st.composite
def requests_with_consents(draw: st.DrawFn) -> tuple[AccessRequest, list[ConsentTerms]]:
    request = draw(access_requests())
    consents = draw(consent_lists)
    if draw(st.booleans()):
        consents.append(draw(covering(request)))
    return request, draw(st.permutations(consents))


@given(requests_with_consents())
def test_a_permit_names_exactly_the_consents_that_cover_the_request(case):
    request, consents = case
    decision = decide(request, consents)
    covering_ids = tuple(sorted(c.id for c in consents if covers(c, request)))
    assert decision.permit == bool(covering_ids)
    assert decision.consent_ids == covering_ids
    if not decision.permit:
        assert decision.reason


@given(access_requests(), st.data())
def test_a_revoked_or_expired_consent_never_permits(request, data):
    consent = data.draw(covering(request))
    for status in ("revoked", "expired"):
        ended = replace(consent, status=status)
        decision = decide(request, [ended])
        assert not decision.permit
        assert status in (decision.reason or "")


@given(access_requests(), st.data())
def test_a_consent_never_permits_at_or_after_the_end_of_its_period(request, data):
    consent = data.draw(covering(request))
    late = replace(request, at=consent.end + timedelta(seconds=data.draw(st.integers(0, 10**6))))
    assert not decide(late, [consent]).permit
    assert "expired" in (why_not(consent, late) or "")


@given(requests_with_consents(), consent_terms(), st.integers(min_value=0, max_value=6))
def test_adding_a_consent_never_turns_a_permit_into_a_deny(case, added, position):
    request, consents = case
    before = decide(request, consents)
    after = decide(request, [*consents[:position], added, *consents[position:]])
    if before.permit:
        assert after.permit
        assert set(before.consent_ids) <= set(after.consent_ids)


@given(requests_with_consents(), st.sampled_from(SECURITY_LABELS))
def test_a_record_label_no_consent_names_is_never_permitted(case, label):
    request, consents = case
    unnamed = [replace(c, security_labels=c.security_labels - {label}) for c in consents]
    labelled = replace(request, security_labels=request.security_labels | {label})
    decision = decide(labelled, unnamed)
    assert not decision.permit


@given(access_requests(), st.data())
def test_star_covers_every_category_but_no_sensitive_label(request, data):
    consent = replace(
        data.draw(covering(request)), categories=frozenset({"*"}), security_labels=frozenset()
    )
    for category in CATEGORIES:
        plain = replace(request, category=category, security_labels=frozenset())
        assert decide(plain, [consent]).permit
        label = data.draw(st.sampled_from(SECURITY_LABELS))
        sensitive = replace(plain, security_labels=frozenset({label}))
        assert not decide(sensitive, [consent]).permit
