"""A consent as FHIR R4 and its events as CloudEvents: both faithful, for any consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir.resources.R4B.consent import Consent as FhirConsent
from hypothesis import given
from hypothesis import strategies as st

from services.consent.domain import (
    ConsentExpired,
    ConsentGranted,
    ConsentRevoked,
    Grantee,
    Period,
    apply,
)
from services.consent.fhir_consent import as_fhir
from services.consent.store import from_fact, to_fact
from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS, from_kafka, to_kafka

START = datetime(2030, 1, 1, tzinfo=UTC)


def _codes(choices: tuple[str, ...], min_size: int = 0) -> st.SearchStrategy[tuple[str, ...]]:
    return st.frozensets(st.sampled_from(choices), min_size=min_size).map(
        lambda s: tuple(sorted(s))
    )


granted_events = st.builds(
    ConsentGranted,
    consent_id=st.uuids().map(str),
    patient=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
    version=st.just(1),
    grantee=st.builds(
        Grantee,
        type=st.sampled_from(["practitioner", "organization"]),
        id=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
    ),
    actions=st.just(("read",)),
    categories=st.one_of(st.just(("*",)), _codes(CATEGORIES, min_size=1)),
    security_labels=_codes(SECURITY_LABELS),
    purposes=_codes(PURPOSES, min_size=1),
    period=st.integers(1, 10**8).map(lambda s: Period(START, START + timedelta(seconds=s))),
    at=st.datetimes(
        min_value=datetime(2029, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    by=st.sampled_from(["patient:alice", "admin:ops"]),
)
endings = st.sampled_from([None, "revoked", "expired"])


def _with_ending(granted: ConsentGranted, ending: str | None):
    if ending is None:
        return [granted]
    later = granted.at + timedelta(days=1)
    if ending == "revoked":
        return [granted, ConsentRevoked(granted.consent_id, granted.patient, 2, later, "admin:ops")]
    return [granted, ConsentExpired(granted.consent_id, granted.patient, 2, later)]


@given(granted_events, endings)
def test_any_consent_reads_as_a_valid_fhir_r4_consent(granted, ending):
    consent = None
    for event in _with_ending(granted, ending):
        consent = apply(consent, event)
    assert consent is not None

    resource = FhirConsent.model_validate(as_fhir(consent))

    assert resource.status == ("active" if ending is None else "inactive")
    assert resource.meta.versionId == str(consent.version)
    provision = resource.provision
    assert provision.actor[0].reference.reference.endswith(f"/{granted.grantee.id}")
    assert tuple(s.code for s in provision.securityLabel or []) == granted.security_labels
    assert tuple(p.code for p in provision.purpose) == granted.purposes
    if granted.categories != ("*",):
        assert tuple(c.code for c in provision.class_fhir) == granted.categories


@given(granted_events, endings)
def test_consent_events_survive_the_trip_through_kafka(granted, ending):
    for event in _with_ending(granted, ending):
        record = to_kafka(to_fact(event))
        assert from_fact(from_kafka(record.headers, record.key, record.value)) == event
