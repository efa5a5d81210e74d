"""The patient page is served with what it needs and may reach only the four services."""

import json
import re

from services.records.app import create_app
from shared.config import Settings


def test_the_page_may_run_only_its_own_files_and_call_only_the_services(monkeypatch):
    monkeypatch.setenv("CARETRAIL_CONSENT_PUBLIC_URL", "https://consent.care.example")
    monkeypatch.setenv("CARETRAIL_AUDIT_BIND", "127.0.0.1:18003")
    monkeypatch.delenv("CARETRAIL_AUDIT_PUBLIC_URL", raising=False)
    monkeypatch.delenv("CARETRAIL_NOTIFY_PUBLIC_URL", raising=False)
    monkeypatch.delenv("CARETRAIL_NOTIFY_BIND", raising=False)
    monkeypatch.delenv("CARETRAIL_OIDC_ISSUER", raising=False)
    client = create_app(Settings.from_env("records", database_url="sqlite://")).test_client()

    page = client.get("/patient")

    assert page.status_code == 200
    policy = dict(
        d.strip().split(" ", 1) for d in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"].split() == [
        "'self'",
        "https://consent.care.example",
        "http://127.0.0.1:18003",
        "http://127.0.0.1:8004",
    ]
    embedded = re.search(r'<script id="setup"[^>]*>(.*?)</script>', page.text, re.S)
    assert json.loads(embedded.group(1))["services"] == {
        "records": "",
        "consent": "https://consent.care.example",
        "audit": "http://127.0.0.1:18003",
        "notify": "http://127.0.0.1:8004",
    }
    script = client.get("/patient/assets/patient.js")
    assert script.status_code == 200
    assert script.mimetype in ("text/javascript", "application/javascript")
    assert script.headers["X-Content-Type-Options"] == "nosniff"


def test_with_an_identity_provider_the_page_may_also_reach_it_to_sign_in(monkeypatch):
    monkeypatch.setenv("CARETRAIL_OIDC_ISSUER", "https://id.care.example/realms/patients/")
    monkeypatch.setenv("CARETRAIL_OIDC_CLIENT_ID", "patient-page")
    client = create_app(Settings.from_env("records", database_url="sqlite://")).test_client()

    page = client.get("/patient")

    policy = page.headers["Content-Security-Policy"]
    assert "https://id.care.example " in policy.split("connect-src", 1)[1].split(";")[0] + " "
    embedded = re.search(r'<script id="setup"[^>]*>(.*?)</script>', page.text, re.S)
    assert json.loads(embedded.group(1))["oidc"] == {
        "issuer": "https://id.care.example/realms/patients",
        "client_id": "patient-page",
        "scope": "openid patient/*.cruds",
    }
    assert "Sign in with your health account" in page.text
