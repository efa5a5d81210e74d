"""The edges every service shares: problem+json errors, tokens, limits, health, docs."""

import json
import re
import time

import jwt
import pytest
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from shared.auth import mint_token
from shared.config import Settings
from shared.errors import Conflict, PermissionDenied
from shared.http import create_service_app, current_principal

SETTINGS = Settings.from_env("test", database_url="sqlite://")
CLINICAL_DETAIL = "secret internals: " + "diagnosis=" + "HIV"


class Body(Schema):
    name = fields.String(required=True)


def build_app(ready_checks=None):
    blp = Blueprint("things", __name__)

    @blp.route("/things", methods=["POST"])
    @blp.arguments(Body)
    @blp.response(201, Body)
    def create(body):
        current_principal()
        return body

    @blp.route("/things/mine")
    def mine():
        principal = current_principal()
        principal.require_scope("Observation", "r")
        return {"sub": principal.sub, "role": principal.role}

    @blp.route("/things/forbidden")
    def forbidden():
        raise PermissionDenied("not yours")

    @blp.route("/things/conflict", methods=["PUT"])
    def conflict():
        raise Conflict("stale version")

    @blp.route("/things/aborted")
    def aborted():
        abort(404, message="no such thing")

    @blp.route("/things/broken")
    def broken():
        raise RuntimeError(CLINICAL_DETAIL)

    app = create_service_app(
        SETTINGS, title="test", blueprints=[blp], ready_checks=ready_checks or {}
    )
    return app


@pytest.fixture
def client():
    return build_app().test_client()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def a_token(**claims):
    settings = SETTINGS
    return mint_token(
        settings, **{"role": "practitioner", "sub": "dr-lee", "org": "org-a", **claims}
    )


def assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


# --- tokens -------------------------------------------------------------------------------


def test_a_valid_token_is_accepted(client):
    response = client.get("/things/mine", headers=auth(a_token()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": "dr-lee", "role": "practitioner"}


def test_a_missing_token_is_401_with_a_bearer_challenge(client):
    response = client.get("/things/mine")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_401(client):
    body = assert_problem(client.get("/things/mine", headers=auth(a_token(ttl_seconds=-10))), 401)
    assert "expired" in body["detail"]


def test_a_token_signed_with_another_key_is_401(client):
    forged = jwt.encode(
        {**jwt.decode(a_token(), options={"verify_signature": False})},
        "another-key-entirely",
        algorithm="HS256",
    )
    assert_problem(client.get("/things/mine", headers=auth(forged)), 401)


def test_a_token_for_another_audience_is_401(client):
    claims = jwt.decode(a_token(), options={"verify_signature": False})
    token = jwt.encode({**claims, "aud": "someone-else"}, SETTINGS.jwt_secret, algorithm="HS256")
    assert_problem(client.get("/things/mine", headers=auth(token)), 401)


def test_an_unsigned_alg_none_token_is_401(client):
    claims = jwt.decode(a_token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_problem(client.get("/things/mine", headers=auth(unsigned)), 401)


def test_a_token_without_the_needed_scope_is_403(client):
    token = a_token(scope="user/Condition.rs")
    body = assert_problem(client.get("/things/mine", headers=auth(token)), 403)
    assert "Observation" in body["detail"]


@pytest.mark.parametrize("scope", ["user/Observation.rs", "user/*.cruds", "user/Observation.read"])
def test_smart_scopes_that_cover_the_resource_are_accepted(client, scope):
    assert client.get("/things/mine", headers=auth(a_token(scope=scope))).status_code == 200


def test_a_practitioner_token_must_name_its_organization(client):
    claims = jwt.decode(a_token(), options={"verify_signature": False})
    del claims["org"]
    token = jwt.encode(claims, SETTINGS.jwt_secret, algorithm="HS256")
    assert_problem(client.get("/things/mine", headers=auth(token)), 401)


# --- errors -------------------------------------------------------------------------------


def test_malformed_json_is_a_400_problem(client):
    response = client.post(
        "/things", data="{not json", content_type="application/json", headers=auth(a_token())
    )
    assert_problem(response, 400)


def test_a_body_that_does_not_fit_the_schema_is_a_422_problem_naming_the_field(client):
    response = client.post("/things", json={"nom": "x"}, headers=auth(a_token()))
    body = assert_problem(response, 422)
    assert "name" in json.dumps(body["errors"])


def test_a_body_that_is_not_json_is_415(client):
    response = client.post(
        "/things", data="name=x", content_type="text/plain", headers=auth(a_token())
    )
    assert_problem(response, 415)


def test_a_ten_megabyte_body_is_413(client):
    payload = json.dumps({"name": "x" * (10 * 1024 * 1024)})
    response = client.post(
        "/things", data=payload, content_type="application/json", headers=auth(a_token())
    )
    assert_problem(response, 413)


def test_domain_errors_become_problems(client):
    assert_problem(client.get("/things/forbidden"), 403)
    assert_problem(client.put("/things/conflict"), 409)
    assert assert_problem(client.get("/things/aborted"), 404)["detail"] == "no such thing"


def test_unknown_paths_and_methods_are_problems(client):
    assert_problem(client.get("/nowhere"), 404)
    response = client.delete("/things/mine")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_an_unexpected_error_is_a_500_that_says_nothing_of_the_internals(client, caplog):
    response = client.get("/things/broken")
    body = assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert body["detail"] == "the error was logged under this request id"
    assert "RuntimeError" in caplog.text
    assert "diagnosis" not in caplog.text  # a message may carry data: only frames are logged


def test_the_request_id_sent_by_the_caller_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


# --- operations ---------------------------------------------------------------------------


def test_health_and_readiness():
    def broken_kafka():
        raise ConnectionError("down")

    client = build_app({"database": lambda: None, "kafka": broken_kafka}).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "ok", "kafka": "unavailable: ConnectionError"}


def test_metrics_count_requests(client):
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'caretrail_http_requests_total\{.*endpoint="/healthz".*\} \d', text)


def test_the_openapi_document_describes_the_routes(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/things" in spec["paths"]


def test_swagger_ui_is_served_without_any_external_asset(client):
    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "openapi.json" in html
    assert not re.search(r'(src|href)="https?://', html)
    asset = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', html).group(1)
    assert client.get(asset).status_code == 200


def test_token_lifetimes_come_from_the_clock():
    token = a_token(ttl_seconds=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 50 <= claims["exp"] - time.time() <= 60
