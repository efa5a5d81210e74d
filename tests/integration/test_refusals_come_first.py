"""Who may call is decided before what they sent is read, on every operation of every service.

A caller without a token gets 401, and a patient asking anything of another patient's chart
gets 403, whatever the body or query: a malformed or invalid request from someone refused
anyway must not earn a 400 or 422 that tells them what the operation expects. The cases are
built from each service's OpenAPI document, so an operation added later is held to it too.
A refusal is a problem document, or under a FHIR base (`/fhir`) the OperationOutcome FHIR
clients read every error as.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.problems import FHIR_JSON, PATIENT_PARAMETERS, PROBLEM_JSON, is_fhir
from tests.support.service_apps import PATIENT, SERVICES, bearer, service_app

OTHER_PATIENT = "pat-bob"


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FlaskClient]:
    directory: Path = tmp_path_factory.mktemp("refusals")
    return {service: service_app(service, directory).test_client() for service in SERVICES}


def _operations(client: FlaskClient) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in client.get("/openapi.json").json["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                parameters = item.get("parameters", []) + operation.get("parameters", [])
                yield method, path, operation | {"parameters": parameters}


def _nonsense(method: str, path: str, operation: dict[str, Any], patient: str) -> dict[str, Any]:
    """A request to the operation with a malformed body and an invalid value in every query
    parameter, on `patient`'s chart."""
    values = {}
    for parameter in operation["parameters"]:
        if parameter["in"] == "path":
            name = parameter["name"]
            kind = parameter["schema"].get("type")
            values[name] = (
                patient
                if name in PATIENT_PARAMETERS
                else (1 if kind == "integer" else uuid.uuid4())
            )
    query = {p["name"]: "%%-not-valid" for p in operation["parameters"] if p["in"] == "query"}
    request: dict[str, Any] = {"method": method.upper(), "query_string": query}
    if "requestBody" in operation:
        request |= {"data": '{"resourceType": ', "content_type": "application/json"}
    return {"path": path.format(**values), **request}


def _cases(on_patient_path: bool) -> list[tuple[str, str, str]]:
    # Collected from the code, not a running app: parametrize ids must exist before fixtures.
    from caretrail.docs import openapi_document

    cases = []
    for service in SERVICES:
        for path, item in openapi_document(service)["paths"].items():
            names = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            if on_patient_path and not names & set(PATIENT_PARAMETERS):
                continue
            cases += [
                (service, m.upper(), path)
                for m, operation in item.items()
                if m != "parameters" and operation.get("security") != []  # [] says: public
            ]
    return cases


def _assert_a_refusal(path: str, response: Any) -> None:
    """The refusal's one shape: problem+json, or an OperationOutcome under the FHIR base."""
    if is_fhir(path):
        assert response.mimetype == FHIR_JSON
        assert response.json["resourceType"] == "OperationOutcome"
    else:
        assert response.mimetype == PROBLEM_JSON


def _find(client: FlaskClient, method: str, path: str) -> dict[str, Any]:
    for found_method, found_path, operation in _operations(client):
        if (found_method.upper(), found_path) == (method, path):
            return operation
    raise LookupError(path)


@pytest.mark.parametrize(("service", "method", "path"), _cases(on_patient_path=True))
def test_a_patient_gets_403_for_anything_sent_to_another_patients_chart(
    clients: dict[str, FlaskClient], service: str, method: str, path: str
):
    client = clients[service]
    request = _nonsense(method, path, _find(client, method, path), OTHER_PATIENT)
    response = client.open(headers=bearer("patient"), **request)
    assert response.status_code == 403, (request, response.get_json())
    _assert_a_refusal(path, response)


@pytest.mark.parametrize(("service", "method", "path"), _cases(on_patient_path=False))
def test_a_caller_without_a_token_gets_401_whatever_they_send(
    clients: dict[str, FlaskClient], service: str, method: str, path: str
):
    client = clients[service]
    request = _nonsense(method, path, _find(client, method, path), PATIENT)
    response = client.open(**request)
    assert response.status_code == 401, (request, response.get_json())
    _assert_a_refusal(path, response)


@pytest.mark.parametrize(
    ("service", "path", "body"),
    [
        ("records", f"/patients/{PATIENT}/records", '{"resourceType": '),
        ("consent", f"/patients/{PATIENT}/consents", "{"),
        ("notify", f"/patients/{PATIENT}/webhooks", "{"),
    ],
)
def test_the_patient_themselves_sending_malformed_json_gets_400(
    clients: dict[str, FlaskClient], service: str, path: str, body: str
):
    response = clients[service].post(
        path, data=body, content_type="application/json", headers=bearer("patient")
    )
    assert response.status_code == 400
    assert response.json["detail"].startswith("the body is not valid JSON")
