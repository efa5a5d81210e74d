"""schemathesis holds each service to its OpenAPI document, with a token of each role.

For every operation it generates requests that fit the document and requests that do not,
sends them to the real app (in-process WSGI, SQLite) and checks that no answer is a 5xx and
that each answer's status, content type and body are the ones documented. The run is bounded
(a few examples per operation and mode) and derandomized, so CI sees the same requests.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.consent.schemas import GRANT_EXAMPLE
from shared.problems import PATIENT_PARAMETERS
from tests.support.service_apps import (
    PATIENT,
    ROLE_CLAIMS,
    SERVICES,
    bearer,
    seed,
    service_app,
)

EXAMPLES_PER_MODE = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _exercise(
    operation, headers: dict[str, str], mode: GenerationMode, tally: Counter, **fixed: str
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case) -> None:
        response = case.call(headers=headers)
        tally[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as failures:
            for failure in failures.exceptions:
                tally[f"{operation.label}: {failure.title}"] += 1

    send()


def _modes(operation) -> tuple[GenerationMode, ...]:
    """Requests that fit the document, and requests that do not where there can be any: a
    public operation without parameters or body (e.g. `/fhir/.well-known/smart-configuration`)
    has one request, and hypothesis finds no other to generate (Unsatisfiable)."""
    public = operation.definition.raw.get("security") == []
    if public and not any(True for _ in operation.iter_parameters()) and not operation.body:
        return (GenerationMode.POSITIVE,)
    return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.mark.parametrize("role", sorted(ROLE_CLAIMS))
@pytest.mark.parametrize("service", SERVICES)
def test_every_answer_is_the_documented_one(service: str, role: str, tmp_path: Path):
    app = service_app(service, tmp_path)
    seed(service, app)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    tally: Counter[int | str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in _modes(operation):
            _exercise(operation, bearer(role), mode, tally)
        # Random patient ids find empty charts: the seeded one answers with items to check.
        named = {p.name for p in operation.path_parameters} & set(PATIENT_PARAMETERS)
        for name in named:
            _exercise(operation, bearer(role), GenerationMode.POSITIVE, tally, **{name: PATIENT})

    # Statuses only are sorted: a failure's key is a string, which no status sorts against.
    answers = dict(sorted((s, n) for s, n in tally.items() if isinstance(s, int)))
    failures = {what: n for what, n in tally.items() if isinstance(what, str)}
    print(f"\n{service} as {role}: {sum(answers.values())} requests, answers {answers}, ", end="")
    print(f"{sum(n for s, n in answers.items() if s >= 500)} server errors, {failures} failures")
    assert failures == {}


ALTERNATIVES = [  # (service, role, path, path parameters, content type)
    ("audit", "compliance", "/audit/events", {}, "text/csv"),
    ("audit", "compliance", "/audit/events", {}, "application/fhir+json"),
    (
        "records",
        "patient",
        "/patients/{pid}/$everything",
        {"pid": PATIENT},
        "application/fhir+json",
    ),
    ("consent", "patient", "/consents/{consent_id}", {}, "application/fhir+json"),
]


@pytest.mark.parametrize(("service", "role", "path", "parameters", "media"), ALTERNATIVES)
def test_each_alternative_content_type_is_served_as_documented(
    service: str, role: str, path: str, parameters: dict[str, str], media: str, tmp_path: Path
):
    app = service_app(service, tmp_path)
    if service == "consent":  # a consent to read: the documented grant example
        granted = app.test_client().post(
            f"/patients/{PATIENT}/consents", json=GRANT_EXAMPLE, headers=bearer(role)
        )
        parameters = {"consent_id": granted.json["id"]}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    case = schema[path]["GET"].Case(path_parameters=parameters)

    response = case.call_and_validate(headers=bearer(role) | {"Accept": media}, checks=CHECKS)

    assert response.status_code == 200
    (content_type,) = response.headers["content-type"]
    assert content_type.split(";")[0] == media
