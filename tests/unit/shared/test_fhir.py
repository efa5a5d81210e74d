import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from flask import Flask
from werkzeug.exceptions import NotFound

from shared.auth import mint_token
from shared.config import Settings
from shared.errors import PermissionDenied
from shared.fhir import (
    FHIR_JSON,
    DateRange,
    Entry,
    NotAcceptable,
    ResourceSupport,
    SearchParam,
    UnsupportedSearch,
    capability_statement,
    count_parameter,
    date_span,
    history,
    mount,
    negotiate_type,
    operation_outcome,
    page_url,
    preferences,
    preferred,
    search_parameters,
    searchset,
    smart_configuration,
    token_matches,
)
from shared.http import create_service_app

SETTINGS = Settings(service="records", database_url="sqlite://")


# --- errors -----------------------------------------------------------------------------------


def test_an_error_naming_elements_is_an_outcome_with_one_issue_per_element():
    outcome = operation_outcome(
        422,
        "the Observation is not valid FHIR R4",
        [{"path": "Observation.status", "problem": "enum", "message": "not a code"}],
    )
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["diagnostics"] == "the Observation is not valid FHIR R4"
    assert outcome["issue"][1]["expression"] == ["Observation.status"]
    assert {i["code"] for i in outcome["issue"]} == {"processing"}


@pytest.mark.parametrize(
    "status, code",
    [
        (400, "invalid"),
        (401, "login"),
        (403, "forbidden"),
        (404, "not-found"),
        (410, "deleted"),
        (412, "conflict"),
        (500, "exception"),
    ],
)
def test_each_status_has_its_issue_type(status, code):
    outcome = operation_outcome(status, "why")
    assert outcome["issue"][0]["code"] == code


def test_query_argument_errors_name_the_parameter():
    outcome = operation_outcome(422, "bad", {"query": {"limit": ["Not a valid integer."]}})
    assert outcome["issue"][1]["expression"] == ["limit"]


@pytest.fixture
def app() -> Flask:
    app = create_service_app(SETTINGS, title="t", blueprints=[], ready_checks={})

    @app.route("/fhir/Observation/<rid>")
    def read(rid: str) -> str:
        raise PermissionDenied("consent does not cover this record")

    @app.route("/fhir/crash")
    def crash() -> str:
        raise RuntimeError("a value of the patient")

    @app.route("/native")
    def native() -> str:
        raise NotFound()

    @app.route("/fhir/metadata")
    def metadata() -> str:
        return "{}"

    mount(app)
    return app


def _token() -> dict[str, str]:
    token = mint_token(SETTINGS, role="practitioner", sub="dr-lee", org="org-a")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path, status", [("/fhir/Observation/1", 403), ("/fhir/Nothing/here/at/all", 404)]
)
def test_every_error_under_the_base_is_an_operation_outcome(app, path, status):
    response = app.test_client().get(path, headers=_token())
    assert response.status_code == status
    assert response.mimetype == FHIR_JSON
    OperationOutcome.model_validate(response.json)


@pytest.mark.parametrize("path", ["/fhir/Observation/1", "/fhir/Nothing/here/at/all", "/fhir"])
def test_without_a_token_anything_under_the_base_is_401_whatever_the_path(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 401
    assert response.mimetype == FHIR_JSON
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    OperationOutcome.model_validate(response.json)


def test_the_capability_statement_needs_no_token(app):
    assert app.test_client().get("/fhir/metadata").status_code == 200


def test_a_crash_under_the_base_is_an_outcome_that_says_nothing_of_its_cause(app):
    response = app.test_client().get("/fhir/crash", headers=_token())
    assert response.status_code == 500
    assert response.json["resourceType"] == "OperationOutcome"
    assert "patient" not in response.get_data(as_text=True)


def test_errors_outside_the_base_stay_problem_json(app):
    response = app.test_client().get("/native")
    assert response.mimetype == "application/problem+json"


# --- negotiation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept, answered",
    [
        (None, FHIR_JSON),
        ("application/fhir+json; fhirVersion=4.0", FHIR_JSON),
        ("application/fhir+json;fhirVersion=4.0.1;q=0.9", FHIR_JSON),
        ("application/json", "application/json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", FHIR_JSON),
        ("application/fhir+xml;q=1, application/json;q=0.5", "application/json"),
    ],
)
def test_accept_is_read_as_media_types_with_parameters(accept, answered):
    assert negotiate_type(accept) == answered


@pytest.mark.parametrize(
    "accept",
    ["application/fhir+xml", "application/fhir+json; fhirVersion=3.0", "application/json;q=0"],
)
def test_what_is_not_served_is_not_acceptable(accept):
    with pytest.raises(NotAcceptable):
        negotiate_type(accept)


@pytest.mark.parametrize(
    "accept, answered",
    [
        ("application/fhir+json; fhirVersion=4.0", FHIR_JSON),
        ("text/csv;q=0.5, application/*", "application/json"),
        ("application/*, application/fhir+json", FHIR_JSON),
        ("text/html", "application/json"),
        (None, "application/json"),
    ],
)
def test_a_native_api_finds_its_offer_the_client_prefers(accept, answered):
    offers = ["application/json", "text/csv", FHIR_JSON]
    assert preferred(accept, offers, "application/json") == answered


def test_format_wins_over_accept():
    assert negotiate_type("application/fhir+xml", "json") == FHIR_JSON
    assert negotiate_type(None, "application/json") == "application/json"
    with pytest.raises(NotAcceptable):
        negotiate_type(FHIR_JSON, "xml")


# --- search parameters ------------------------------------------------------------------------


def test_an_unknown_search_parameter_is_refused_unless_handling_is_lenient():
    args = {"patient": ["p1"], "color": ["red"], "_count": ["5"]}
    with pytest.raises(UnsupportedSearch, match="color"):
        search_parameters(args, {"patient"})
    kept = search_parameters(args, {"patient"}, "handling=lenient")
    assert kept == {"patient": ["p1"], "_count": ["5"]}


def test_prefer_is_read_as_preferences():
    assert preferences('return=minimal, handling="lenient"') == {
        "return": "minimal",
        "handling": "lenient",
    }


@pytest.mark.parametrize("values, count", [(None, 20), (["3"], 3), (["1000"], 100)])
def test_count_is_a_page_size_within_bounds(values, count):
    assert count_parameter(values) == count


@pytest.mark.parametrize("values", [["0"], ["many"]])
def test_a_count_that_is_no_page_size_is_refused(values):
    with pytest.raises(UnsupportedSearch):
        count_parameter(values)


# --- dates ------------------------------------------------------------------------------------


def test_a_date_covers_the_instants_of_its_precision():
    start, end = date_span("2024-02")
    assert (start, end) == (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    start, end = date_span("2024-12-31T23:30:00.120+02:00")
    assert start == datetime(2024, 12, 31, 21, 30, 0, 120000, tzinfo=UTC)


@pytest.mark.parametrize(
    "criterion, value, matches",
    [
        ("ge2024-01-01", "2024-01-01T10:00:00Z", True),
        ("ge2024-01-02", "2024-01-01T10:00:00Z", False),
        ("gt2024-01-01", "2024-01-01T10:00:00Z", False),
        ("lt2024-01-02", "2024-01-01T10:00:00Z", True),
        ("le2023", "2024-01-01", False),
        ("2024-01", "2024-01-15", True),
        ("2024-01-15", "2024-01", False),
    ],
)
def test_date_prefixes_compare_ranges(criterion, value, matches):
    assert DateRange.parse("date", criterion).matches(*date_span(value)) is matches


@pytest.mark.parametrize("text", ["sa2024", "2024-13-99", "yesterday"])
def test_a_date_criterion_not_served_is_refused(text):
    with pytest.raises(UnsupportedSearch):
        DateRange.parse("date", text)


# --- Bundles ----------------------------------------------------------------------------------


def test_a_searchset_carries_each_resource_as_stored():
    stored = (
        b'{"resourceType":"Observation","id":"o1","status":"final",'
        b'"code":{"text":"x"},"valueQuantity":{"value":6.10}}'
    )
    body = searchset(
        [Entry("http://h/fhir/Observation/o1", stored)],
        self_url="http://h/fhir/Observation?patient=p",
        next_url="http://h/fhir/Observation?patient=p&_cursor=abc",
    )
    assert b'"value":6.10' in body
    bundle = json.loads(body)
    Bundle.model_validate(bundle)
    assert "total" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]


def test_a_history_bundle_says_how_each_version_came_to_be():
    stored = b'{"resourceType":"Patient","id":"p1"}'
    body = history(
        [Entry("http://h/fhir/Patient/p1", stored, ("POST", "Patient"), "201")],
        self_url="http://h/fhir/Patient/p1/_history",
    )
    bundle = json.loads(body)
    Bundle.model_validate(bundle)
    assert bundle["entry"][0]["request"] == {"method": "POST", "url": "Patient"}


def test_a_page_url_replaces_the_cursor():
    args = [("patient", "p"), ("_cursor", "old")]
    assert page_url("http://h/fhir/Observation", args, "new") == (
        "http://h/fhir/Observation?patient=p&_cursor=new"
    )


# --- discovery --------------------------------------------------------------------------------


def test_the_capability_statement_says_what_is_registered_and_how_to_get_a_token():
    settings = Settings(
        service="records",
        database_url="sqlite://",
        smart_authorization_endpoint="https://idp/authorize",
        smart_token_endpoint="https://idp/token",
    )
    statement = capability_statement(
        [
            ResourceSupport(
                "Observation",
                ["read", "search-type"],
                [SearchParam("patient", "reference")],
            )
        ],
        base_url="http://h/fhir",
        settings=settings,
        name="records",
        date="2026-12-02",
    )
    CapabilityStatement.model_validate(statement)
    rest = statement["rest"][0]
    assert rest["resource"][0]["searchParam"] == [{"name": "patient", "type": "reference"}]
    uris = rest["security"]["extension"][0]["extension"]
    assert {u["url"]: u["valueUri"] for u in uris} == {
        "authorize": "https://idp/authorize",
        "token": "https://idp/token",
    }


def test_smart_discovery_claims_only_what_is_enforced_or_configured():
    local = smart_configuration(SETTINGS, ["patient/*.cruds"])
    assert "launch-standalone" not in local["capabilities"]
    assert "permission-v2" in local["capabilities"]
    assert "token_endpoint" not in local
    configured = smart_configuration(
        Settings(
            service="records",
            database_url="sqlite://",
            jwks_url="https://idp/jwks",
            smart_authorization_endpoint="https://idp/authorize",
            smart_token_endpoint="https://idp/token",
            smart_capabilities=("launch-standalone", "client-confidential-asymmetric"),
        ),
        ["patient/*.cruds"],
    )
    assert configured["jwks_uri"] == "https://idp/jwks"
    assert configured["token_endpoint"] == "https://idp/token"
    assert "launch-standalone" in configured["capabilities"]


LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
LAB_CATEGORY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }
        ]
    }
]


@pytest.mark.parametrize(
    "element, token, matches",
    [
        (LAB_CATEGORY, LAB, True),
        (LAB_CATEGORY, "laboratory", True),
        (LAB_CATEGORY, "http://terminology.hl7.org/CodeSystem/observation-category|", True),
        (LAB_CATEGORY, "|laboratory", False),
        (LAB_CATEGORY, "http://other|laboratory", False),
        (LAB_CATEGORY, "vital-signs", False),
        (["food", "medication"], "food", True),
        ({"system": "http://loinc.org", "code": "4548-4"}, "http://loinc.org|4548-4", True),
        (None, "laboratory", False),
    ],
)
def test_a_token_matches_codes_as_fhir_search_does(element, token, matches):
    assert token_matches(element, token) is matches
