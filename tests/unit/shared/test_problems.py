"""Problems have one shape, and each OpenAPI document says which an operation answers."""

import pytest
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from shared.auth import Principal, mint_token
from shared.config import Settings
from shared.errors import InvalidInput, PermissionDenied
from shared.http import authorized_by, create_service_app
from shared.problems import FHIR_JSON, PROBLEM_JSON, field_errors, served_as

SETTINGS = Settings.from_env("test", database_url="sqlite://")


class Note(Schema):
    text = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)


class Paging(Schema):
    limit = fields.Integer(required=True)


def _own_chart_only(principal: Principal, patient: str) -> None:
    if not principal.is_patient(patient):
        raise PermissionDenied("a patient writes only to their own chart")


def build_app():
    blp = Blueprint("notes", __name__)

    @blp.route("/patients/<patient>/notes/<note_id>", methods=["PUT"])
    @authorized_by(_own_chart_only)
    @blp.arguments(Note)
    @blp.response(200, Note)
    def put_note(body, patient, note_id):
        if body["text"] == "domain says no":
            raise InvalidInput("cannot", errors={"period": ["end must be after start"]})
        return body

    @blp.route("/notes")
    @blp.arguments(Paging, location="query")
    @blp.response(200, Note)
    @blp.doc(**served_as({"text/csv": {"type": "string"}}))
    def list_notes(query):
        return {"text": "x", "tags": []}

    @blp.route("/patients/<patient>/notes")
    @blp.response(200, Note)
    def chart_notes(patient):
        return {"text": "x", "tags": []}

    @blp.route("/status")
    @blp.response(200, Note)
    @blp.doc(security=[])
    def status():
        return {"text": "x", "tags": []}

    @blp.route("/fhir/Note/<note_id>", methods=["GET"])
    @blp.alt_response(410, response="GONE", description="erased")
    @blp.doc(responses={"200": {"description": "a Note", "content": {FHIR_JSON: {}}}})
    def fhir_note(note_id):
        return {}

    return create_service_app(SETTINGS, title="t", blueprints=[blp], ready_checks={})


@pytest.fixture(scope="module")
def app():
    return build_app()


def _patient(patient="pat-alice"):
    token = mint_token(SETTINGS, role="patient", sub=patient, patient=patient)
    return {"Authorization": f"Bearer {token}"}


# --- the one shape of field errors --------------------------------------------------------


def test_webargs_errors_become_field_errors_naming_where_they_are():
    raw = {"json": {"period": {"end": ["Not a valid datetime."]}, "tags": {0: ["Not a string."]}}}
    assert field_errors(raw) == [
        {"in": "body", "path": "period.end", "problem": "Not a valid datetime."},
        {"in": "body", "path": "tags[0]", "problem": "Not a string."},
    ]


def test_query_and_header_errors_say_so():
    raw = {"query": {"limit": ["Too big."]}, "headers": {"If-Match": ["Bad."]}}
    assert field_errors(raw) == [
        {"in": "query", "path": "limit", "problem": "Too big."},
        {"in": "header", "path": "If-Match", "problem": "Bad."},
    ]


def test_domain_errors_and_chart_errors_keep_their_paths():
    assert field_errors({"period": ["end must be after start"], "_schema": ["whole"]}) == [
        {"path": "period", "problem": "end must be after start"},
        {"path": "", "problem": "whole"},
    ]
    chart = [{"path": "Observation.status", "problem": "missing", "message": "Field required"}]
    assert field_errors(chart) == chart
    assert field_errors(["the body as a whole"]) == [{"path": "", "problem": "the body as a whole"}]
    assert field_errors(None) is None and field_errors({}) is None


def test_every_refusal_answers_the_same_shape(app):
    client = app.test_client()
    wrong_body = client.put(
        "/patients/pat-alice/notes/n1", json={"text": 3, "tags": []}, headers=_patient()
    )
    domain_no = client.put(
        "/patients/pat-alice/notes/n1",
        json={"text": "domain says no", "tags": []},
        headers=_patient(),
    )
    for response in (wrong_body, domain_no):
        assert response.status_code == 422 and response.mimetype == PROBLEM_JSON
        assert {"path", "problem"} <= set(response.json["errors"][0])
    assert wrong_body.json["errors"] == [
        {"in": "body", "path": "text", "problem": "Not a valid string."}
    ]


def test_malformed_json_is_a_400_saying_so_without_field_errors(app):
    response = app.test_client().put(
        "/patients/pat-alice/notes/n1",
        data='{"text": ',
        content_type="application/json",
        headers=_patient(),
    )
    assert response.status_code == 400
    assert response.json["detail"] == "the body is not valid JSON"
    assert "errors" not in response.json


# --- who may call is decided before what they sent is read --------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"text": "fine", "tags": []}},
        {"json": {"nonsense": True}},
        {"data": "{", "content_type": "application/json"},
    ],
    ids=["valid body", "invalid body", "malformed body"],
)
def test_a_patient_writing_to_another_chart_is_refused_whatever_they_send(app, request_kwargs):
    response = app.test_client().put(
        "/patients/pat-bob/notes/n1", headers=_patient("pat-alice"), **request_kwargs
    )
    assert response.status_code == 403
    assert response.json["detail"] == "a patient writes only to their own chart"


def test_without_a_token_a_bad_body_is_401_not_422(app):
    response = app.test_client().put("/patients/pat-alice/notes/n1", json={})
    assert response.status_code == 401


def test_the_rule_is_given_only_the_path_parameters_it_names(app):
    response = app.test_client().put(
        "/patients/pat-alice/notes/n1", json={"text": "ok", "tags": []}, headers=_patient()
    )
    assert response.status_code == 200


# --- the OpenAPI document ------------------------------------------------------------------


def _document(app):
    return app.test_client().get("/openapi.json").json


def test_each_operation_documents_the_problems_it_can_answer(app):
    paths = _document(app)["paths"]
    put = paths["/patients/{patient}/notes/{note_id}"]["put"]["responses"]
    listing = paths["/notes"]["get"]["responses"]
    status = paths["/status"]["get"]["responses"]
    chart = paths["/patients/{patient}/notes"]["get"]["responses"]
    assert set(put) == {"200", "400", "401", "403", "404", "413", "415", "422"}
    assert set(listing) == {"200", "401", "403", "422"}
    assert set(status) == {"200"}  # public: no token to refuse
    assert set(chart) == {"200", "401", "403"}  # a chart is never missing, only empty


def test_problems_are_documented_as_problem_json_with_the_problem_schema(app):
    document = _document(app)
    for name, response in document["components"]["responses"].items():
        if name.startswith("FHIR_"):
            continue  # the FHIR base's, below
        assert list(response["content"]) == [PROBLEM_JSON], name
        assert response["content"][PROBLEM_JSON]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "request_id"} <= set(
        problem["properties"]
    )
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}


def test_errors_under_the_fhir_base_are_documented_as_operation_outcomes(app):
    document = _document(app)
    responses = document["paths"]["/fhir/Note/{note_id}"]["get"]["responses"]
    assert set(responses) == {"200", "401", "403", "404", "406", "410"}
    for status, response in responses.items():
        if status == "200":
            continue
        name = response["$ref"].rpartition("/")[2]
        content = document["components"]["responses"][name]["content"]
        assert content == {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    outcome = document["components"]["schemas"]["OperationOutcome"]
    assert outcome["properties"]["resourceType"]["enum"] == ["OperationOutcome"]


def test_alternative_content_types_join_the_json_answer(app):
    ok = _document(app)["paths"]["/notes"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "text/csv"}


def test_a_patient_path_parameter_has_an_example_swagger_ui_fills_in(app):
    parameters = _document(app)["paths"]["/patients/{patient}/notes/{note_id}"]["parameters"]
    examples = {p["name"]: p.get("example") for p in parameters}
    assert examples == {"patient": "pat-alice", "note_id": None}
