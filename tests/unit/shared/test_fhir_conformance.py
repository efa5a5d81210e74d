"""The chart refuses what a conformant FHIR R4 server refuses, and names the element, not the value.

The corpus under tests/fixtures/fhir_corpus is the one bench/fhir_validate.py posts to HAPI
FHIR's `$validate` on demand: each invalid file names the element and the rule HL7 breaks.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import fhirpathpy
import pytest

from services.records.resources import validate_resource
from shared.events import CATEGORIES
from shared.fhir_conformance import RULES, Invariant, NonConformant, check_conformance

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "fhir_corpus"
VALID = sorted((CORPUS / "valid").glob("*.json"))
INVALID = sorted((CORPUS / "invalid").glob("*.json"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_valid_resource_of_the_corpus_is_taken(path, caplog):
    resource = json.loads(path.read_text())
    assert validate_resource(resource, "pat-1").category == resource["resourceType"]
    assert not caplog.records  # every invariant in reach was evaluated, none left unknown


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_an_invalid_resource_of_the_corpus_is_refused_naming_the_element_and_rule(path, caplog):
    case = json.loads(path.read_text())
    with pytest.raises(NonConformant) as refused:
        validate_resource(case["resource"], "pat-1")
    found = {(issue.path, issue.rule) for issue in refused.value.issues}
    assert (case["expect"]["path"], case["expect"]["rule"]) in found
    assert refused.value.status == 422
    assert {"path": case["expect"]["path"], "problem": case["expect"]["rule"]} in [
        {"path": e["path"], "problem": e["problem"]} for e in refused.value.errors
    ]
    assert not caplog.records


def test_the_corpus_covers_every_chart_type_both_ways():
    types = {json.loads(p.read_text())["resourceType"] for p in VALID}
    refused = {json.loads(p.read_text())["resource"]["resourceType"] for p in INVALID}
    assert types == refused == set(CATEGORIES)
    assert set(CATEGORIES) <= set(json.loads(RULES.read_text())["types"])


def test_an_issue_names_the_rule_but_never_quotes_the_value_sent():
    secret = "hiv-positive"
    resource = {
        "resourceType": "Observation",
        "status": secret,
        "code": {"text": "x"},
        "valueQuantity": {"value": 1, "comparator": secret},
    }
    with pytest.raises(NonConformant) as refused:
        check_conformance(resource)
    assert {i.path for i in refused.value.issues} == {
        "Observation.status",
        "Observation.valueQuantity.comparator",
    }
    assert secret not in json.dumps(refused.value.errors) + refused.value.detail


def test_a_coded_concept_under_a_required_binding_needs_a_coding_of_its_value_set():
    condition = json.loads((CORPUS / "valid" / "condition-active.json").read_text())
    condition["clinicalStatus"] = {
        "coding": [{"system": "http://example.org/statuses", "code": "active"}]
    }
    with pytest.raises(NonConformant) as refused:
        check_conformance(condition)
    assert [i.path for i in refused.value.issues] == ["Condition.clinicalStatus"]


def test_checking_leaves_the_resource_as_it_was_and_prints_nothing(capsys):
    # ref-1 calls FHIRPath trace(), which fhirpathpy prints unless told otherwise.
    resource = json.loads((CORPUS / "valid" / "procedure.json").read_text())
    resource["performer"] = [{"actor": {"reference": "#not-contained"}}]
    before = copy.deepcopy(resource)
    with pytest.raises(NonConformant) as refused:
        check_conformance(resource)
    assert [i.rule for i in refused.value.issues] == ["ref-1"]
    assert resource == before
    assert capsys.readouterr() == ("", "")


def test_the_rules_name_their_source_and_every_invariant_parses():
    rules = json.loads(RULES.read_text())
    assert rules["source"].startswith("ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4:")
    invariants = [i for t in rules["types"].values() for i in t["invariants"]]
    assert {"obs-6", "obs-7", "pat-1", "con-5", "ait-1", "per-1"} <= {i["key"] for i in invariants}
    for expression in {i["expression"] for i in invariants}:
        fhirpathpy.compile(expression)


def _verdict(resource):
    try:
        check_conformance(resource)
    except NonConformant as refused:
        return sorted((i.path, i.rule) for i in refused.issues)
    return []


def test_skipping_invariants_on_absent_elements_changes_no_verdict(monkeypatch):
    # dom-2, 4, 5 read only `contained`: without it, their value is known unevaluated.
    cases = [json.loads(p.read_text()) for p in VALID] + [
        json.loads(p.read_text())["resource"] for p in INVALID
    ]
    with_contained = json.loads((CORPUS / "valid" / "procedure.json").read_text())
    nested = {"resourceType": "Practitioner", "id": "inner"}
    with_contained["contained"] = [{"resourceType": "Practitioner", "contained": [nested]}]
    cases.append(with_contained)
    shortcut = [_verdict(case) for case in cases]
    monkeypatch.setattr(Invariant, "reads_nothing_of", lambda self, node: False)
    assert [_verdict(case) for case in cases] == shortcut
    assert ("Procedure", "dom-2") in shortcut[-1]


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ("Patient/pat-1", True),
        ("Practitioner/dr-lee/_history/2", True),
        ("#contained-1", True),
        ("urn:uuid:9d4c9c61-3d7a-4d2f-9c1e-2f0f3bde8a5b", True),
        ("https://fhir.example.org/r4/Patient/123", True),
        ("::not a reference::", False),
        ("Spaceship/1", False),
        ("Patient/has space", False),
        ("#", False),
    ],
)
def test_a_reference_must_have_a_form_fhir_gives_meaning_to(reference, valid):
    resource = json.loads((CORPUS / "valid" / "procedure.json").read_text())
    resource["performer"] = [{"actor": {"reference": reference, "display": "x"}}]
    verdict = _verdict(resource)
    # A local reference with nothing contained also breaks ref-1; only the syntax is asked here.
    syntax = [v for v in verdict if v[1] == "reference-invalid"]
    assert syntax == (
        [] if valid else [("Procedure.performer[0].actor.reference", "reference-invalid")]
    )
