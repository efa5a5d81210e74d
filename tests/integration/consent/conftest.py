"""The consent service over a fresh database of each kind and the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.consent.app import create_app
from services.consent.store import consent_events, consents, metadata
from shared.broker import make_producer
from shared.config import Settings
from shared.db import create_schema, make_engine, session_factory
from shared.outbox import OutboxRelay
from tests.conftest import bearer


def a_grant(**overrides: Any) -> dict[str, Any]:
    """A valid grant body; `overrides` replace its fields."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "grantee": {"type": "practitioner", "id": "dr-lee"},
        "actions": ["read"],
        "categories": ["Observation"],
        "security_labels": [],
        "purposes": ["TREAT"],
        "period": {"start": now.isoformat(), "end": (now + timedelta(days=30)).isoformat()},
    }
    body.update(overrides)
    return body


@dataclass
class Patient:
    id: str
    headers: dict[str, str]


@dataclass
class ConsentService:
    client: FlaskClient
    engine: Engine
    relay: OutboxRelay
    token: Callable[..., str]
    database_url: str

    def new_patient(self) -> Patient:
        pid = str(uuid.uuid4())
        return Patient(pid, bearer(self.token("patient", pid, patient=pid)))

    def as_role(self, role: str, sub: str, **claims: Any) -> dict[str, str]:
        return bearer(self.token(role, sub, **claims))

    def grant(self, patient: Patient, **overrides: Any) -> dict[str, Any]:
        response = self.client.post(
            f"/patients/{patient.id}/consents", json=a_grant(**overrides), headers=patient.headers
        )
        assert response.status_code == 201, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    def counts(self) -> tuple[int, int]:
        """(events written, consents in the read model)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(consent_events)).scalar_one(),
                conn.execute(select(func.count()).select_from(consents)).scalar_one(),
            )

    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    def read_model(self) -> list[dict[str, Any]]:
        """Every row of the read model, in id order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(consents).order_by(consents.c.consent_id))
            return [dict(row._mapping) for row in rows]


def settings_for(database_url: str, kafka_bootstrap: str) -> Settings:
    return Settings.from_env(
        "consent", database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap
    )


@pytest.fixture
def service(
    database_url: str, kafka_bootstrap: str, token: Callable[..., str]
) -> Iterator[ConsentService]:
    engine = make_engine(database_url)
    create_schema(engine, metadata)
    app = create_app(settings_for(database_url, kafka_bootstrap))
    producer = make_producer(kafka_bootstrap)
    yield ConsentService(
        app.test_client(),
        engine,
        OutboxRelay(engine, producer, table_name=consent_events.name),
        token,
        database_url,
    )
    producer.close()
    app.extensions["consent"].kw["bind"].dispose()
    engine.dispose()
