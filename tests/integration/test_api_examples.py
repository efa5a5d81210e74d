"""Every example an OpenAPI document shows works when sent as it is shown.

Swagger UI fills "Try it out" with a body's example and a parameter's example; a reader who
sends them should get the answer the document promises, not a 422. Each operation whose
examples name every path parameter is sent, with the query parameters' examples, as the
patient the examples name (or as an admin when no patient is in the path), and must answer its
documented success status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_apps import PATIENT, SERVICES, bearer, service_app

METHODS_LAST = ("delete",)  # an erasure sent first would leave every other example a 410


def _examples(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of each operation that shows an example, erasures last."""
    found = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method == "parameters":
                continue
            parameters = shared + operation.get("parameters", [])
            body = _body_example(operation)
            if body is None and "requestBody" in operation:
                continue  # a body is needed and none is shown
            if body is None and not any("example" in p for p in parameters):
                continue
            found.append((method, path, operation | {"parameters": parameters}))
    return sorted(found, key=lambda f: (f[0] in METHODS_LAST, f[1], f[0]))


def _body_example(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    return content.get("application/json", {}).get("example")


def _query_examples(operation: dict[str, Any]) -> dict[str, Any]:
    """The query parameters "Try it out" fills in: each one's example, as the parameter or its
    schema shows it."""
    return {
        p["name"]: p.get("example", p.get("schema", {}).get("example"))
        for p in operation["parameters"]
        if p["in"] == "query" and "example" in p | p.get("schema", {})
    }


def _success(operation: dict[str, Any]) -> int:
    (status,) = [int(s) for s in operation["responses"] if s.startswith("2")]
    return status


@pytest.mark.parametrize("service", SERVICES)
def test_each_documented_example_gets_its_documented_answer(service: str, tmp_path: Path):
    app = service_app(service, tmp_path)
    client = app.test_client()
    document = client.get("/openapi.json").json
    sent = []
    for method, path, operation in _examples(document):
        values = {p["name"]: p.get("example") for p in operation["parameters"] if p["in"] == "path"}
        if None in values.values():
            continue  # a path naming a record or a webhook: no example can name one that exists
        url = path.format(**values)
        role = "patient" if PATIENT in values.values() else "admin"
        body = _body_example(operation)
        response = client.open(
            url,
            method=method.upper(),
            query_string=_query_examples(operation),
            headers=bearer(role),
            **({"data": json.dumps(body), "content_type": "application/json"} if body else {}),
        )
        assert response.status_code == _success(operation), (method, url, response.get_json())
        sent.append((method, path))
    assert sent, f"{service} documents no example that can be sent"
