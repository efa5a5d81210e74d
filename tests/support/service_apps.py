"""Each service's web app over a fresh SQLite database, and a token of each role.

The apps are the real ones (`create_app`), answering through the whole request stack; only
notify's DNS is a fake, so a generated webhook host resolves the same way every run.
"""

from __future__ import annotations

import base64
import importlib
from pathlib import Path
from typing import Any

from flask import Flask

from shared.auth import mint_token
from shared.config import Settings
from shared.db import create_schema, make_engine
from shared.problems import PATIENT_EXAMPLE

SERVICES = ("records", "consent", "audit", "notify")
PATIENT = PATIENT_EXAMPLE  # the patient the OpenAPI examples name
TEST_MASTER_KEY = base64.b64encode(b"contract-test-master-key-32-byte").decode()
ROLE_CLAIMS: dict[str, dict[str, str]] = {
    "patient": {"sub": "alice", "patient": PATIENT},
    "practitioner": {"sub": "dr-lee", "org": "org-a"},
    "compliance": {"sub": "cora"},
    "admin": {"sub": "ops"},
}


def public_address(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


def service_app(service: str, directory: Path) -> Flask:
    """The service's app over a new SQLite database in `directory`, its tables created.

    The broker address answers nothing: a request writes facts to the outbox, never to Kafka.
    """
    url = f"sqlite:///{directory / f'{service}.sqlite3'}"
    settings = Settings.from_env(
        service,
        database_url=url,
        kafka_bootstrap_servers="127.0.0.1:9",
        master_key=TEST_MASTER_KEY,
    )
    engine = make_engine(url)
    create_schema(engine, importlib.import_module(f"services.{service}.store").metadata)
    engine.dispose()
    module = importlib.import_module(f"services.{service}.app")
    if service == "notify":
        app: Flask = module.create_app(settings, resolver=public_address)
    else:
        app = module.create_app(settings)
    return app


def seed(service: str, app: Flask) -> None:
    """Give the service something of `PATIENT`'s to answer with: the documented examples sent
    as their patient and a practitioner (records, consent, notify), or facts appended to the
    trail as the audit worker appends them (audit)."""
    if service == "audit":
        _seed_trail(app)
        return
    client = app.test_client()
    for method, path, body, role in _examples()[service]:
        response = client.open(path, method=method, json=body, headers=bearer(role))
        assert response.status_code in (200, 201), response.get_json()


def _seed_trail(app: Flask) -> None:
    from services.audit.consumers import HANDLERS
    from shared.inbox import Origin
    from tests.unit.audit.facts import access, consent_granted

    facts = [
        access(PATIENT, actor="practitioner:dr-lee", org="org-a"),
        access(PATIENT, actor="practitioner:dr-kim", org="org-b", outcome="deny"),
        access(PATIENT, actor="practitioner:dr-kim", org="org-b", break_glass_reason="OVRER"),
        consent_granted(PATIENT),
    ]
    with app.extensions["audit"].sessions() as session:
        for offset, fact in enumerate(facts):
            HANDLERS[fact.type](session, fact, Origin(fact.topic, 0, offset))
        session.commit()


def _examples() -> dict[str, list[tuple[str, str, Any, str]]]:
    from services.consent.schemas import GRANT_EXAMPLE
    from services.notify.schemas import PREFERENCES_EXAMPLE, WEBHOOK_EXAMPLE
    from services.records.api import OBSERVATION_EXAMPLE

    chart = f"/patients/{PATIENT}"
    return {
        "records": [
            ("POST", f"{chart}/records", OBSERVATION_EXAMPLE, "patient"),
            ("POST", f"{chart}/records", OBSERVATION_EXAMPLE, "practitioner"),
        ],
        "consent": [("POST", f"{chart}/consents", GRANT_EXAMPLE, "patient")],
        "notify": [
            ("PUT", f"{chart}/notification-preferences", PREFERENCES_EXAMPLE, "patient"),
            ("POST", f"{chart}/webhooks", WEBHOOK_EXAMPLE, "patient"),
        ],
    }


def bearer(role: str) -> dict[str, str]:
    """The Authorization header of a valid token of `role`."""
    settings = Settings.from_env("test")
    token = mint_token(settings, role=role, **ROLE_CLAIMS[role])  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}
