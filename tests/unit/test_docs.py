"""docs/ is generated from the code (`caretrail docs`); these keep it from drifting."""

import re

import pytest

from caretrail.docs import ROOT, asyncapi_document, openapi_document, rendered
from shared.events import REGISTRY


def test_the_event_catalogue_is_asyncapi_3_and_names_every_registered_type():
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == set(REGISTRY)
    for operation in document["operations"].values():
        assert operation["action"] == "send"
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in document["channels"]


@pytest.mark.parametrize("path", sorted(rendered(), key=str), ids=lambda p: p.name)
def test_the_committed_docs_equal_what_the_code_generates(path):
    expected = rendered()[path]
    assert path.exists(), f"run `caretrail docs`: {path.relative_to(ROOT)} is missing"
    assert path.read_text() == expected, f"run `caretrail docs`: {path.name} is stale"


CONTRACT = {  # DESIGN.md's HTTP contract, path parameters written as {}
    "records": {
        "/patients/{}",
        "/patients/{}/$everything",
        "/patients/{}/records",
        "/patients/{}/records/{}",
        "/patients/{}/records/{}/entered-in-error",
        "/patients/{}/records/{}/versions/{}",
    },
    "consent": {
        "/patients/{}/consents",
        "/consents/{}",
        "/consents/{}/revoke",
        "/consents/{}/history",
        "/access-decisions",
    },
    "audit": {
        "/audit/events",
        "/audit/patients/{}/disclosures",
        "/audit/verify",
        "/audit/checkpoints/latest",
        "/audit/break-glass",
        "/audit/break-glass/{}/review",
    },
    "notify": {
        "/patients/{}/notifications",
        "/patients/{}/notifications/{}/read",
        "/patients/{}/notification-preferences",
        "/patients/{}/webhooks",
    },
}


@pytest.mark.parametrize("service", sorted(CONTRACT))
def test_each_service_serves_every_path_of_the_contract(service):
    document = openapi_document(service)
    served = {re.sub(r"\{[^}]+\}", "{}", path) for path in document["paths"]}
    assert CONTRACT[service] <= served
