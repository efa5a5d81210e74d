"""A consent is answered as FHIR when the client's Accept asks for it, parameters and all."""

from __future__ import annotations

import pytest


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # negotiation is the same whatever the database


@pytest.mark.parametrize(
    "accept, answered",
    [
        ("application/fhir+json; fhirVersion=4.0", "application/fhir+json"),
        ("application/fhir+json;q=0.9, application/json;q=0.1", "application/fhir+json"),
        ("application/fhir+json; fhirVersion=3.0, application/json;q=0.5", "application/json"),
        ("*/*", "application/json"),
    ],
)
def test_accept_is_read_as_media_types_with_parameters(service, accept, answered):
    patient = service.new_patient()
    granted = service.grant(patient, grantee={"type": "organization", "id": "org-a"})

    response = service.client.get(
        f"/consents/{granted['id']}", headers=patient.headers | {"Accept": accept}
    )

    assert (response.status_code, response.mimetype) == (200, answered)
