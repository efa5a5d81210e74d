"""A FHIR Consent in: the grant it means, or 422 naming each element caretrail cannot express."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given

from services.consent.domain import Grantee, apply
from services.consent.fhir_consent import as_fhir, grant_terms
from shared.errors import InvalidInput
from tests.unit.consent.test_fhir_and_facts import granted_events


@given(granted_events)
def test_a_consent_read_as_fhir_grants_the_same_terms_when_sent_back(granted):
    consent = apply(None, granted)

    terms = grant_terms(as_fhir(consent))

    assert (terms.patient, terms.grantee) == (granted.patient, granted.grantee)
    assert terms.actions == frozenset(granted.actions)
    assert terms.categories == frozenset(granted.categories)
    assert terms.security_labels == frozenset(granted.security_labels)
    assert terms.purposes == frozenset(granted.purposes)
    assert (terms.start, terms.end) == (granted.period.start, granted.period.end)


def a_consent() -> dict:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat-1"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "period": {"end": "2031-01-01T00:00:00Z"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/org-b"},
                }
            ],
            "action": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                            "code": "access",
                        }
                    ]
                }
            ],
            "purpose": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
            ],
        },
    }


def test_a_minimal_consent_grants_every_category_from_now_on():
    terms = grant_terms(a_consent())
    assert terms.grantee == Grantee("organization", "org-b")
    assert (terms.categories, terms.start, terms.actions) == ({"*"}, None, {"read"})


def _with(change) -> dict:
    resource = copy.deepcopy(a_consent())
    change(resource)
    return resource


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (_with(lambda r: r.update(status="proposed")), "Consent.status"),
        (_with(lambda r: r["provision"].update(type="deny")), "Consent.provision.type"),
        (_with(lambda r: r["provision"]["period"].pop("end")), "Consent.provision.period.end"),
        (
            _with(lambda r: r["provision"]["actor"].append(r["provision"]["actor"][0])),
            "Consent.provision.actor",
        ),
        (
            _with(lambda r: r["provision"]["actor"][0].update(reference={"reference": "Group/1"})),
            "Consent.provision.actor[0].reference",
        ),
        (
            _with(lambda r: r["provision"]["action"][0]["coding"][0].update(code="correct")),
            "Consent.provision.action[0]",
        ),
        (
            _with(lambda r: r["provision"]["purpose"][0].update(code="MARKT")),
            "Consent.provision.purpose[0]",
        ),
        (
            _with(lambda r: r["provision"].update(securityLabel=[{"code": "PSY"}])),
            "Consent.provision.securityLabel[0]",
        ),
        (
            _with(
                lambda r: r["provision"].update(
                    **{"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Claim"}]}
                )
            ),
            "Consent.provision.class[0]",
        ),
        (
            _with(lambda r: r["provision"].update(provision=[{"type": "deny"}])),
            "Consent.provision.provision",
        ),
        (_with(lambda r: r.update(patient={"reference": "Group/1"})), "Consent.patient"),
        (_with(lambda r: r.update(status=7)), "Consent.status"),
        (_with(lambda r: r.pop("policyRule")), "Consent"),  # ppc-1: a policy or a policyRule
        (_with(lambda r: r.update(status="bogus")), "Consent.status"),  # a required binding
    ],
)
def test_what_the_aggregate_cannot_express_is_refused_naming_the_element(resource, path):
    with pytest.raises(InvalidInput) as refused:
        grant_terms(resource)
    assert refused.value.status == 422
    assert path in {e["path"] for e in refused.value.errors}


def test_every_problem_is_named_at_once():
    resource = _with(lambda r: (r.update(status="draft"), r["provision"].update(type="deny")))
    with pytest.raises(InvalidInput) as refused:
        grant_terms(resource)
    assert {e["path"] for e in refused.value.errors} == {"Consent.status", "Consent.provision.type"}
