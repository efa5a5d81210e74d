"""A patient signs in to the patient page with an OpenID Connect provider, in real Chromium.

The provider is a stand-in that knows the authorization code flow with PKCE and signs the
user in at once; the page and the records app are real.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import pytest
from flask import Flask, jsonify, redirect, request
from playwright.sync_api import Browser, Page, expect

from services.records.app import create_app
from services.records.store import metadata
from shared.auth import mint_token
from shared.config import Settings
from shared.db import create_schema
from tests.support.browser import ARTIFACTS, chromium, serve

CLIENT_ID = "patient-page"


def identity_provider(settings: Settings, patient: str, seen: dict[str, Any]) -> Flask:
    """Signs in `patient` for whoever asks, but hands the token only to the PKCE verifier's
    holder."""
    app = Flask("idp")

    @app.after_request
    def cors(response):  # a provider lets browser apps fetch its metadata and tokens
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    @app.route("/.well-known/openid-configuration")
    def metadata_document():
        return jsonify(
            issuer=request.host_url.rstrip("/"),
            authorization_endpoint=f"{request.host_url}authorize",
            token_endpoint=f"{request.host_url}token",
        )

    @app.route("/authorize")
    def authorize():
        seen["authorize"] = dict(request.args)
        code = uuid4().hex
        seen["codes"] = {code: request.args["code_challenge"]}
        query = urlencode({"code": code, "state": request.args["state"]})
        return redirect(f"{request.args['redirect_uri']}?{query}")

    @app.route("/token", methods=["POST"])
    def token():
        challenge = seen["codes"].pop(request.form["code"], None)
        digest = hashlib.sha256(request.form["code_verifier"].encode()).digest()
        if challenge != base64.urlsafe_b64encode(digest).rstrip(b"=").decode():
            return jsonify(error="invalid_grant"), 400
        access = mint_token(settings, role="patient", sub="dana", patient=patient)
        return jsonify(access_token=access, token_type="Bearer", expires_in=3600)

    return app


@pytest.fixture
def patient() -> str:
    return f"pat-{uuid4().hex[:8]}"


@pytest.fixture
def seen() -> dict[str, Any]:
    return {}


@pytest.fixture
def provider_url(patient, seen) -> Iterator[str]:
    yield from serve(identity_provider(Settings.from_env("idp"), patient, seen))


@pytest.fixture
def records_url(provider_url, sqlite_url, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("CARETRAIL_OIDC_ISSUER", provider_url)
    monkeypatch.setenv("CARETRAIL_OIDC_CLIENT_ID", CLIENT_ID)
    app = create_app(Settings.from_env("records", database_url=sqlite_url))
    create_schema(app.extensions["records.engine"], metadata)
    yield from serve(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_patient_signs_in_with_the_identity_provider_and_sees_her_chart(
    records_url: str, page: Page, patient: str, seen: dict[str, Any]
):
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.goto(f"{records_url}/patient")

    page.get_by_role("button", name="Sign in with your health account").click()

    expect(page.locator("#who")).to_have_text("Signed in as dana")
    expect(page.locator("#chart-list")).to_contain_text("Your chart is empty.")
    assert page.url == f"{records_url}/patient"  # the one-time code is gone from the address
    asked: dict[str, str] = seen["authorize"]
    assert asked["client_id"] == CLIENT_ID and asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == f"{records_url}/patient"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "patient-page-oidc-signed-in.png"), full_page=True)
    assert problems == []


def test_a_sign_in_answer_that_did_not_start_on_the_page_is_refused(records_url: str, page: Page):
    page.goto(f"{records_url}/patient?code=stolen&state=forged")

    expect(page.locator("#status")).to_contain_text("did not start here")
    expect(page.locator("#main")).to_be_hidden()
    assert page.url == f"{records_url}/patient"
