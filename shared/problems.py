"""Problem documents (RFC 9457): their one shape, and how each OpenAPI document says so.

Every service answers an error with the same `application/problem+json` body, whichever part
of the stack refused the request (webargs, a domain rule, the request edges in shared.http).
Field errors come in three raw forms — webargs' `{location: {field: [message]}}`, a domain's
`{field: [message]}` and the chart's `[{path, problem}]` — and leave as one list of
`FieldError`s. The apispec plugin documents, on every operation, the problems it can answer,
so a client (and schemathesis) can hold the service to them. Under a FHIR base (`/fhir`) the
same errors leave as FHIR `OperationOutcome`s in `application/fhir+json` (`shared.fhir.mount`),
and the plugin documents them so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from apispec import APISpec, BasePlugin
from flask_smorest import Api

PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
FHIR_BASE = "/fhir"  # every service's FHIR R4 base: its errors are OperationOutcomes
PATIENT_EXAMPLE = "pat-alice"  # the patient of README's walk through
PATIENT_PARAMETERS = ("pid", "patient", "patient_id")  # as the services name it in paths

FIELD_ERROR = {
    "type": "object",
    "description": "One thing wrong with the request, named by where it is; never its value.",
    "required": ["path", "problem"],
    "properties": {
        "in": {"type": "string", "enum": ["body", "query", "header", "path"]},
        "path": {
            "type": "string",
            "description": "the field, e.g. `period.end`, `categories[0]`, `Observation.status`",
        },
        "problem": {"type": "string", "description": "what is wrong with it"},
        "message": {"type": "string", "description": "more words about the problem"},
    },
}
PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "instance", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "`about:blank`: the status says it all"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what was wrong, without clinical content"},
        "instance": {"type": "string", "description": "the path that was asked"},
        "request_id": {"type": "string", "description": "also in the X-Request-ID header"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
    },
}
OPERATION_OUTCOME = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome (http://hl7.org/fhir/R4/operationoutcome.html): "
    "every error under a FHIR base, one issue per element at fault, else one for the whole.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {
                        "type": "string",
                        "enum": ["fatal", "error", "warning", "information"],
                    },
                    "code": {
                        "type": "string",
                        "description": "http://hl7.org/fhir/R4/valueset-issue-type.html",
                    },
                    "diagnostics": {"type": "string", "description": "what was wrong"},
                    "expression": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the element at fault, e.g. `Observation.status`",
                    },
                },
            },
        },
    },
}
# webargs' locations, as an OpenAPI parameter's `in` names them
_LOCATIONS = {"json": "body", "query": "query", "querystring": "query", "headers": "header"}
_BODY = {"json", "form", "files", "json_or_form"}


def field_errors(raw: Any) -> list[dict[str, str]] | None:
    """Any raw form of field errors as the one list of `FieldError`s (None for none)."""
    if not raw:
        return None
    if isinstance(raw, list):
        return [dict(e) if isinstance(e, Mapping) else {"path": "", "problem": str(e)} for e in raw]
    if isinstance(raw, Mapping) and raw.keys() <= {*_LOCATIONS, *_BODY}:
        return [
            {"in": _LOCATIONS.get(location, "body")} | error
            for location, messages in raw.items()
            for error in _flatten(messages, "")
        ]
    return list(_flatten(raw, ""))


def _flatten(messages: Any, path: str) -> Iterator[dict[str, str]]:
    if isinstance(messages, Mapping):
        for key, inner in messages.items():
            if isinstance(key, int):
                yield from _flatten(inner, f"{path}[{key}]")
            elif key == "_schema":  # marshmallow's name for "the object as a whole"
                yield from _flatten(inner, path)
            else:
                yield from _flatten(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(messages, list | tuple):
        for message in messages:
            yield from _flatten(message, path)
    else:
        yield {"path": path, "problem": str(messages)}


def is_fhir(path: str) -> bool:
    """Whether a path is under the FHIR base, where errors are OperationOutcomes."""
    return path == FHIR_BASE or path.startswith(FHIR_BASE + "/")


def statuses(path: str, operation: Mapping[str, Any]) -> list[int]:
    """The problems an operation can answer whatever its view does.

    Every operation needs a token (401) the principal may lack a right for (403), unless it
    says it is public (`security: []`); a body can be malformed (400), too large (413), not
    JSON (415) or wrong (422); a parameter can be wrong (422); a path names something that
    may not exist (404). Under the FHIR base every interaction negotiates `Accept` and
    `_format` (406), and a search parameter it cannot apply is a 400 (FHIR's strict handling).
    """
    found = [] if operation.get("security") == [] else [401, 403]
    fhir = is_fhir(path)
    if fhir:
        found.append(406)
    if "requestBody" in operation:
        found += [400, 413, 415, 422]
    # `_format` only chooses among what is served: a wrong one is the 406 above.
    read = [p for p in operation.get("parameters", ()) if not (fhir and p.get("name") == "_format")]
    if any(p.get("in") in ("query", "header") for p in read):
        found += [400, 422] if fhir else [422]
    if any(name not in PATIENT_PARAMETERS for name in re.findall(r"\{([^}]+)\}", path)):
        found.append(404)  # a chart is never missing, only empty; a record or consent can be
    return sorted(set(found))


def _outcome_response(status: HTTPStatus) -> str:
    """The name of the documented OperationOutcome answer of a status."""
    return f"FHIR_{status.name}"


class ProblemResponses(BasePlugin):
    """Documents every operation's problems as `application/problem+json` `Problem`s, and
    those of the FHIR base's operations as `application/fhir+json` `OperationOutcome`s."""

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec
        spec.components.schema("FieldError", FIELD_ERROR)
        spec.components.schema("Problem", PROBLEM)
        spec.components.schema("OperationOutcome", OPERATION_OUTCOME, lazy=True)
        for status in HTTPStatus:
            if status >= 400:
                response = {
                    "description": f"{status.phrase}, as a FHIR OperationOutcome",
                    "content": {
                        FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
                    },
                }
                spec.components.response(_outcome_response(status), response, lazy=True)

    def path_helper(
        self,
        path: str | None = None,
        operations: dict[Any, Any] | None = None,
        parameters: list[dict[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> str | None:
        # Swagger UI fills a parameter's example in: "Try it out" then reads a real chart.
        for parameter in parameters or ():
            if parameter.get("in") == "path" and parameter.get("name") in PATIENT_PARAMETERS:
                parameter.setdefault("example", PATIENT_EXAMPLE)
        return None

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            for status in statuses(path or "", operation):
                if status not in responses and str(status) not in responses:
                    responses[status] = HTTPStatus(status).name
            if is_fhir(path or ""):
                _as_outcomes(responses)
                # Only a FHIR base's document holds it: registered (once) when one is described.
                self.spec.components.get_ref("schema", "OperationOutcome")


def _as_outcomes(responses: dict[Any, Any]) -> None:
    """Each error a FHIR operation documents by a problem's name (its own, flask-smorest's or
    the plugin's) as the OperationOutcome `shared.fhir.mount` makes of it; an error a route
    documents with its own content is left as it says."""
    for key, response in responses.items():
        status = int(key)
        if status < 400:
            continue
        named = response if isinstance(response, str) else None
        if isinstance(response, Mapping) and set(response) == {"$ref"}:
            named = str(response["$ref"]).rpartition("/")[2]
        if named == HTTPStatus(status).name:
            responses[key] = _outcome_response(HTTPStatus(status))


class ServiceApi(Api):
    """flask-smorest's Api, its error responses problem+json and no catch-all `default`."""

    # A `default` answer would document every status, so no check could find an undocumented one.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self) -> None:
        # flask-smorest names a response per status (`NOT_FOUND`, `UNPROCESSABLE_ENTITY`…) for
        # `alt_response(404, response="NOT_FOUND")` and its 422; these say what is really sent.
        for status in HTTPStatus:
            if status >= 400:
                response = {
                    "description": status.phrase,
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
                self.spec.components.response(status.name, response, lazy=True)


def served_as(alternatives: Mapping[str, Mapping[str, Any]], status: int = 200) -> dict[str, Any]:
    """`blp.doc` arguments declaring more content types of one answer, so Swagger UI offers
    them: `{content type: JSON schema}`."""
    content = {media: {"schema": dict(schema)} for media, schema in alternatives.items()}
    # An int, as flask-smorest keys its own responses: "200" would replace them, not join them.
    return {"responses": {status: {"content": content}}}
