"""FHIR R4 resources as the chart takes them in: validated, typed, labelled, coded.

Validation uses `fhir.resources.R4B` (the R4 models of the library's line that keeps them) for
structure, then `shared.fhir_conformance` for what it does not check: required bindings and
invariants, as a conformant R4 server does.
Errors name the FHIR path that is wrong and what is wrong with it, never the value sent:
the value may be clinical content.

What is stored is the resource as sent, not the model's re-serialisation of it: FHIR requires
decimals and dateTimes to round-trip exactly (6.10 stays 6.10, `.120+02:00` stays), so numbers
are read as `Decimal` and written back from their own digits (`dumps`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import simplejson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from shared.errors import InvalidInput, MalformedBody
from shared.events import CATEGORIES, SECURITY_LABELS
from shared.fhir import date_span, token_matches
from shared.fhir_conformance import check_conformance

MAX_DEPTH = 64
# The elements that say what a resource is about, per type; what `?code=` filters on.
CODE_ELEMENTS = ("code", "vaccineCode", "medicationCodeableConcept", "type")
SUBJECT_ELEMENTS = ("subject", "patient")


@dataclass(frozen=True)
class ClinicalResource:
    """A valid FHIR resource of a chart category, with what the service needs to know of it."""

    category: str
    security: frozenset[str]
    codes: frozenset[str]
    content: dict[str, Any]

    def with_identity(self, record_id: str, version: int, last_updated: str) -> dict[str, Any]:
        """The resource as stored: its id and meta set by the chart, not the client."""
        meta = {**self.content.get("meta", {}), "versionId": str(version)}
        meta["lastUpdated"] = last_updated
        # resourceType and id first, as FHIR JSON reads; the client's id gives way to ours.
        return {"resourceType": self.category, "id": record_id, **self.content} | {
            "id": record_id,
            "meta": meta,
        }


def dumps(content: Any) -> bytes:
    """FHIR JSON of parsed content, each decimal written with the digits it was sent with."""
    return simplejson.dumps(
        content, use_decimal=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def loads(raw: bytes) -> Any:
    """Stored FHIR JSON, its decimals as `Decimal` (so `dumps` gives back the same digits)."""
    return json.loads(raw, parse_float=Decimal)


def parse_body(raw: bytes) -> Any:
    """JSON as the chart accepts it: well formed, finite numbers, not absurdly deep."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_decimal)
    except (ValueError, RecursionError) as err:
        raise MalformedBody(f"the body is not valid JSON: {_json_error(err)}") from None
    if _depth(body) > MAX_DEPTH:
        raise MalformedBody(f"the body is nested deeper than {MAX_DEPTH} levels")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_decimal(text: str) -> Decimal:
    # A decimal beyond a double's range is not one any FHIR system can read back.
    if not abs(float(text)) < float("inf"):
        raise ValueError("a number is out of range")
    return Decimal(text)


def _json_error(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno} column {err.colno}"
    return "it is nested too deeply" if isinstance(err, RecursionError) else str(err)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest


def validate_resource(body: Any, patient: str) -> ClinicalResource:
    """The body as a FHIR resource of one of the chart's categories, or `InvalidInput`."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a FHIR resource (a JSON object)")
    category = body.get("resourceType")
    if not isinstance(category, str) or category not in CATEGORIES:
        raise InvalidInput(
            f"resourceType must be one of {', '.join(CATEGORIES)}",
            errors=[{"path": "resourceType", "problem": "unsupported resource type"}],
        )
    try:
        get_fhir_model_class(category).model_validate(body)
    except ValidationError as err:
        raise InvalidInput(
            f"the {category} is not valid FHIR R4", errors=_fhir_errors(category, err)
        ) from None
    content: dict[str, Any] = body  # valid: what is kept is the resource as sent
    check_conformance(content)
    _check_subject(category, content, patient)
    return ClinicalResource(category, _security_labels(content), _codes(content), content)


def _fhir_errors(category: str, err: ValidationError) -> list[dict[str, str]]:
    errors = []
    for item in err.errors(include_url=False, include_context=False):
        path = category
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        error = {"path": path, "problem": item["type"]}
        # Pydantic's messages rarely quote the value sent; when one does, it is left out.
        if str(item.get("input")) not in item["msg"]:
            error["message"] = item["msg"]
        errors.append(error)
    return errors


def _check_subject(category: str, content: dict[str, Any], patient: str) -> None:
    """A resource that names its patient must name this chart's patient."""
    for element in SUBJECT_ELEMENTS:
        reference = (content.get(element) or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            if reference != f"Patient/{patient}":
                raise InvalidInput(
                    "the resource is about another patient than this chart's",
                    errors=[
                        {"path": f"{category}.{element}.reference", "problem": "other patient"}
                    ],
                )


def _security_labels(content: dict[str, Any]) -> frozenset[str]:
    labels = content.get("meta", {}).get("security", [])
    return frozenset(c["code"] for c in labels if c.get("code") in SECURITY_LABELS)


def _codes(content: dict[str, Any]) -> frozenset[str]:
    """Each coding as `code` and as `system|code` (the FHIR token search forms)."""
    return frozenset(_code_forms(content))


def _code_forms(content: dict[str, Any]) -> Iterator[str]:
    for element in CODE_ELEMENTS:
        value = content.get(element)
        concepts = value if isinstance(value, list) else [value] if value else []
        for concept in concepts:
            for coding in concept.get("coding", []) if isinstance(concept, dict) else []:
                code = coding.get("code")
                if code:
                    yield code
                    if coding.get("system"):
                        yield f"{coding['system']}|{code}"


# --- what FHIR search and the resource's own status read of a resource ----------------------

# The element that tells, per type, that a resource was entered in error (R4 value sets).
_STATUS_ELEMENT = {
    "Observation": "status",
    "MedicationStatement": "status",
    "Immunization": "status",
    "DiagnosticReport": "status",
    "DocumentReference": "status",
    "Procedure": "status",
    "Encounter": "status",
}
_VERIFICATION_SYSTEM = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}
# The elements a type's `date` search parameter reads (R4 search parameter definitions).
DATE_ELEMENTS = {
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod"),
    "AllergyIntolerance": ("recordedDate",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"),
    "DocumentReference": ("date",),
    "Encounter": ("period",),
    "Immunization": ("occurrenceDateTime",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod"),
    "Procedure": ("performedDateTime", "performedPeriod"),
}
# The types with a `category` element (what the `category` search parameter reads).
CATEGORY_TYPES = frozenset(
    {
        "Observation",
        "Condition",
        "AllergyIntolerance",
        "DiagnosticReport",
        "DocumentReference",
        "Procedure",
        "MedicationStatement",
    }
)
_OPEN_END = datetime.max.replace(tzinfo=UTC)
_OPEN_START = datetime.min.replace(tzinfo=UTC)


def as_entered_in_error(category: str, content: bytes) -> bytes:
    """The resource saying, in its own status, that it was entered in error.

    Condition and AllergyIntolerance say it in `verificationStatus`, and then may not keep a
    `clinicalStatus` (invariants con-5, ait-2). Patient has no such status and is unchanged.
    """
    if category in _STATUS_ELEMENT:
        resource = loads(content)
        resource[_STATUS_ELEMENT[category]] = "entered-in-error"
    elif category in _VERIFICATION_SYSTEM:
        resource = loads(content)
        resource.pop("clinicalStatus", None)
        resource["verificationStatus"] = {
            "coding": [{"system": _VERIFICATION_SYSTEM[category], "code": "entered-in-error"}]
        }
    else:
        return content
    return dumps(resource)


def clinical_date(category: str, content: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """The instants the resource's `date` search parameter covers, if it has one."""
    for element in DATE_ELEMENTS.get(category, ()):
        value = content.get(element)
        try:
            if isinstance(value, str):
                return date_span(value)
            if isinstance(value, dict) and (value.get("start") or value.get("end")):
                start = date_span(value["start"])[0] if value.get("start") else _OPEN_START
                end = date_span(value["end"])[1] if value.get("end") else _OPEN_END
                return start, end
        except ValueError:
            return None
    return None


def matches_token(category: str, content: dict[str, Any], parameter: str, value: str) -> bool:
    """Whether the resource matches `parameter=value` for the `code` and `category` token
    parameters (a comma separates alternatives); any other parameter matches nothing."""
    if parameter == "category":
        elements: tuple[str, ...] = ("category",) if category in CATEGORY_TYPES else ()
    else:
        elements = CODE_ELEMENTS if parameter == "code" else ()
    alternatives = value.split(",")
    return any(token_matches(content.get(e), t) for e in elements for t in alternatives)
