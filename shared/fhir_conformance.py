"""What a conformant FHIR R4 server refuses, beyond structure: required bindings and invariants.

`fhir.resources` checks a resource's structure; HL7 also requires that an element bound to a
value set with *required* strength hold a code of that value set (`Observation.status` is
`final`, not `bogus`), that a resource meet its type's invariants (obs-6: no value together
with a `dataAbsentReason`), whose FHIRPath expressions are part of the definitions, and that a
reference be one (`Patient/p-1`, not `::x::`).
Both come as data, shared/fhir_r4_rules.json, extracted from the official R4 definitions by
deploy/fhir/extract_rules.py (the file names its source and what it could not take); the
invariants are evaluated with fhirpathpy, each expression parsed once per process.

An issue names the element (`Observation.component[1].valueQuantity.comparator`) and the rule,
never the value found there: it may be clinical content.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from shared.errors import InvalidInput

RULES = Path(__file__).with_name("fhir_r4_rules.json")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issue:
    """One way a resource breaks the FHIR R4 definitions: where, and which rule."""

    path: str
    message: str
    rule: str


class NonConformant(InvalidInput):
    """A resource that a conformant FHIR R4 server refuses; `.issues` says where and why."""

    def __init__(self, resource_type: str, issues: list[Issue]) -> None:
        super().__init__(
            f"the {resource_type} does not conform to FHIR R4",
            errors=[{"path": i.path, "problem": i.rule, "message": i.message} for i in issues],
        )
        self.issues = issues


def check_conformance(resource: dict[str, Any]) -> None:
    """Raise `NonConformant` if a structurally valid resource breaks a binding or invariant."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in _rules():
        return
    issues = list(_issues(resource, _rules()[resource_type], resource_type, resource))
    if issues:
        raise NonConformant(resource_type, issues)


@dataclass(frozen=True)
class Invariant:
    key: str
    human: str
    evaluate: Callable[[Any, dict[str, Any]], list[Any]]
    base: str
    # The elements the expression starts from, when nothing else can change its value
    # (no %variable, no function reading the whole resource at its top level); None otherwise.
    roots: frozenset[str] | None

    def reads_nothing_of(self, node: dict[str, Any]) -> bool:
        """Whether the invariant's value on `node` is its value on an empty element."""
        roots = self.roots
        return roots is not None and not any(_may_be_one_of(key, roots) for key in node)


@dataclass(frozen=True)
class Binding:
    kind: str  # the element's FHIR type: code, Coding or CodeableConcept
    url: str
    codes: dict[str, frozenset[str]]  # by code system

    def admits(self, item: Any) -> bool:
        if self.kind in ("code", "string", "uri"):
            return isinstance(item, str) and any(item in codes for codes in self.codes.values())
        codings = [item] if self.kind == "Coding" else _codings(item)
        return any(
            isinstance(c, dict) and c.get("code") in self.codes.get(str(c.get("system")), ())
            for c in codings
        )


def _codings(concept: Any) -> list[Any]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return codings if isinstance(codings, list) else []


@dataclass
class ElementRules:
    """The rules of one JSON property path of a type, and of the properties under it."""

    binding: Binding | None = None
    is_reference: bool = False
    invariants: list[Invariant] = field(default_factory=list)
    children: dict[str, ElementRules] = field(default_factory=dict)


def _issues(
    node: dict[str, Any], rules: ElementRules, path: str, resource: dict[str, Any]
) -> Iterator[Issue]:
    for invariant in rules.invariants:
        if not _holds(invariant, node, resource):
            yield Issue(path, f"{invariant.human} ({invariant.key})", invariant.key)
    for name, child in rules.children.items():
        value = node.get(name)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            where = f"{path}.{name}[{index}]" if isinstance(value, list) else f"{path}.{name}"
            if child.binding and not child.binding.admits(item):
                message = f"the code is not in the required value set {child.binding.url}"
                yield Issue(where, message, "code-invalid")
            reference = item.get("reference") if isinstance(item, dict) else None
            if child.is_reference and not _is_literal_reference(reference):
                yield Issue(f"{where}.reference", _NOT_A_REFERENCE, "reference-invalid")
            if isinstance(item, dict):
                yield from _issues(item, child, where, resource)


_NOT_A_REFERENCE = "not a reference: #id, Type/id (/_history/version), or an absolute URL or URN"
_ID = r"[A-Za-z0-9\-.]{1,64}"
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


def _is_literal_reference(reference: Any) -> bool:
    """Whether `Reference.reference` has a form FHIR gives meaning to, when there is one.

    http://hl7.org/fhir/R4/references.html#literal: a local `#id`, a relative
    `Type/id` (optionally `/_history/version`) naming a resource type, or an absolute URL.
    """
    if reference is None:
        return True
    if not isinstance(reference, str):
        return False
    if reference.startswith("#"):
        return len(reference) > 1
    return bool(_relative_reference().fullmatch(reference) or _ABSOLUTE.fullmatch(reference))


@cache
def _relative_reference() -> re.Pattern[str]:
    types = "|".join(json.loads(RULES.read_text())["resourceTypes"])
    return re.compile(rf"(?:{types})/{_ID}(?:/_history/{_ID})?")


def _holds(invariant: Invariant, node: dict[str, Any], resource: dict[str, Any]) -> bool:
    # Evaluating FHIRPath costs ~100 µs; most of a resource's invariants (dom-2..5 on
    # `contained`) start from elements a chart resource rarely has.
    if invariant.reads_nothing_of(node):
        return _holds_on_nothing(invariant)
    return _evaluated(invariant, node, resource)


@cache
def _holds_on_nothing(invariant: Invariant) -> bool:
    return _evaluated(invariant, {}, {})


def _evaluated(invariant: Invariant, node: dict[str, Any], resource: dict[str, Any]) -> bool:
    context = {"resource": resource, "rootResource": resource}
    try:
        result = invariant.evaluate(ResourceNode.create_node(node, invariant.base), context)
    except Exception as err:  # noqa: BLE001 - an evaluator gap must not refuse what HL7 allows
        log.warning("invariant %s could not be evaluated: %s", invariant.key, type(err).__name__)
        return True
    # FHIRPath's empty collection is "unknown": only a definite false is a violation.
    return result != [False]


@cache
def _rules() -> dict[str, ElementRules]:
    data = json.loads(RULES.read_text())
    value_sets = {
        url: {system: frozenset(codes) for system, codes in systems.items()}
        for url, systems in data["valueSets"].items()
    }
    compiled: dict[str, ElementRules] = {}
    for name, type_rules in data["types"].items():
        root = compiled[name] = ElementRules()
        for at, (kind, url) in type_rules["bindings"].items():
            _element(root, at).binding = Binding(kind, url, value_sets[url])
        for at in type_rules["references"]:
            _element(root, at).is_reference = True
        for rule in type_rules["invariants"]:
            expression = rule["expression"]
            _element(root, rule["at"]).invariants.append(
                Invariant(
                    rule["key"],
                    rule["human"],
                    _compiled(expression),
                    rule["base"],
                    _roots(expression),
                )
            )
    return compiled


def _element(root: ElementRules, at: str) -> ElementRules:
    node = root
    for name in at.split(".") if at else ():
        node = node.children.setdefault(name, ElementRules())
    return node


@cache
def _compiled(expression: str) -> Callable[[Any, dict[str, Any]], list[Any]]:
    return fhirpathpy.compile(expression, models["r4"], _OPTIONS)


# Functions whose argument is evaluated against the whole resource, not the items before them.
_AT_ROOT = re.compile(r"\b(union|combine|intersect|exclude|subsetOf|supersetOf|iif)\(")
_CHAIN_START = re.compile(r"(?<![.\w$%])([A-Za-z_]\w*)(\s*\()?")
_OPERATORS = {"and", "or", "xor", "implies", "in", "contains", "is", "as", "div", "mod"}


def _roots(expression: str) -> frozenset[str] | None:
    """The elements the paths of `expression` start from, if its value depends on nothing else.

    Text inside a method's parentheses is evaluated per item of the path before it (none when
    that path is empty), so only the top level counts; a %variable or a call without a path
    before it there (`today()`), or an argument taken at the root (`union`), may read anything.
    """
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", expression)
    if _AT_ROOT.search(text):
        return None
    top = _top_level(text)
    if "%" in top or "$" in top:
        return None
    roots = set()
    for name, call in _CHAIN_START.findall(top):
        if call:
            return None
        if name not in _OPERATORS and not name[0].isupper() and name not in ("true", "false"):
            roots.add(name)
    return frozenset(roots)


def _top_level(text: str) -> str:
    """`text` without what is inside a method's parentheses (grouping parentheses stay)."""
    kept, calls = [], []  # calls: for each open parenthesis, whether it is a method's
    for index, char in enumerate(text):
        if char == "(":
            word = re.search(r"(\w+)\s*$", text[:index])
            calls.append(word is not None and word.group(1) not in _OPERATORS)
            if calls[-1] and all(not c for c in calls[:-1]):
                kept.append("()")
            continue
        if char == ")":
            calls.pop()
            continue
        if not any(calls):
            kept.append(char)
    return "".join(kept)


def _may_be_one_of(key: str, names: frozenset[str]) -> bool:
    """Whether JSON property `key` may be one of the FHIRPath element `names`.

    `valueQuantity` is `value` (a choice type), `_status` is `status` (its extensions); a
    camel-case key that is not a choice (`dataAbsentReason` and `data`) errs on the side of
    evaluating.
    """
    key = key.lstrip("_")
    return any(key == n or (key.startswith(n) and key[len(n) :][:1].isupper()) for n in names)


def _has_value(inputs: list[Any]) -> list[bool]:
    """FHIRPath `hasValue()`, which fhirpathpy lacks: one primitive with a value."""
    return [len(inputs) == 1 and not isinstance(inputs[0], (dict, list)) and inputs[0] is not None]


def _untraced(*_: Any) -> None:
    """FHIRPath `trace()` (ref-1 calls it) would print resource content to stdout."""


_OPTIONS = {
    "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
    "traceFn": _untraced,
}
