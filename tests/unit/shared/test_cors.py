"""A page on one caretrail origin calls the other services from the browser, and no one else."""

import pytest
from flask import Flask, jsonify
from flask_smorest import Blueprint

from shared.config import Settings
from shared.cors import allow_page_origins
from shared.errors import NotAuthenticated
from shared.http import create_service_app, current_principal

PAGE = "http://127.0.0.1:8001"


@pytest.fixture
def client():
    app = Flask("cors-test")

    @app.route("/patients/<pid>/consents", methods=["GET", "POST"])
    def consents(pid):
        return jsonify({"items": []})

    allow_page_origins(app, [PAGE])
    return app.test_client()


def test_the_page_origin_may_read_an_answer_and_its_request_id(client):
    response = client.get("/patients/p1/consents", headers={"Origin": PAGE})

    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_from_the_page_allows_a_bearer_token_and_a_json_post(client):
    response = client.options(
        "/patients/p1/consents",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "null"])
def test_another_origin_gets_no_cors_headers(client, origin):
    plain = client.get("/patients/p1/consents", headers={"Origin": origin})
    preflight = client.options(
        "/patients/p1/consents",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )

    for response in (plain, preflight):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers


def test_a_preflight_needs_no_token_even_where_every_request_is_authenticated_first():
    blp = Blueprint("inbox", __name__, url_prefix="/patients")

    @blp.before_request
    def authenticate():
        current_principal()

    @blp.route("/<pid>/notifications")
    def notifications(pid):
        return {"items": []}

    app = create_service_app(
        Settings.from_env("test", database_url="sqlite://", page_origins=(PAGE,)),
        title="test",
        blueprints=[blp],
        ready_checks={},
    )
    response = app.test_client().options(
        "/patients/p1/notifications",
        headers={"Origin": PAGE, "Access-Control-Request-Method": "GET"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == PAGE


def test_a_service_refusal_is_readable_by_the_page_so_it_can_say_why():
    app = create_service_app(
        Settings.from_env("test", database_url="sqlite://", page_origins=(PAGE,)),
        title="test",
        blueprints=[],
        ready_checks={},
    )

    @app.route("/mine")
    def mine():
        raise NotAuthenticated("no token")

    response = app.test_client().get("/mine", headers={"Origin": PAGE})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == PAGE


def test_page_origins_default_to_records_public_url_and_can_be_configured(monkeypatch):
    monkeypatch.delenv("CARETRAIL_PAGE_ORIGINS", raising=False)
    monkeypatch.setenv("CARETRAIL_RECORDS_BIND", "127.0.0.1:18001")
    assert Settings.from_env("audit").page_origins == ("http://127.0.0.1:18001",)

    monkeypatch.setenv("CARETRAIL_RECORDS_PUBLIC_URL", "https://care.example/")
    assert Settings.from_env("audit").page_origins == ("https://care.example",)

    monkeypatch.setenv("CARETRAIL_PAGE_ORIGINS", "https://a.example, https://b.example/")
    assert Settings.from_env("audit").page_origins == ("https://a.example", "https://b.example")
