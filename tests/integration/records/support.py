"""What the records integration tests share: sample resources, consent events, the harness."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from services.records.consumers import HANDLERS
from services.records.store import metadata
from shared.events import TOPIC_CONSENT, Event, new_event
from shared.inbox import Origin, handle_once
from shared.outbox import OutboxRelay, wait_until_published

MASTER_KEY = base64.b64encode(b"records-integration-test-key-32b").decode()
CONSUMER = "records"


def observation(code: str = "8867-4", *labels: str, patient: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": 72, "unit": "beats/minute"},
    }
    if labels:
        resource["meta"] = {"security": [{"code": label} for label in labels]}
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return resource


def consent_granted(
    patient: str,
    grantee: tuple[str, str],
    *,
    categories: Sequence[str] = ("*",),
    labels: Sequence[str] = (),
    purposes: Sequence[str] = ("TREAT",),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Event:
    """A consent.granted event as the consent service would emit it."""
    now = datetime.now(UTC)
    return new_event(
        "consent.granted",
        source_service="consent",
        subject=patient,
        actor=f"patient:{patient}",
        data={
            "consent_id": str(uuid.uuid4()),
            "patient": patient,
            "version": 1,
            "grantee": {"type": grantee[0], "id": grantee[1]},
            "actions": ["read"],
            "categories": list(categories),
            "security_labels": list(labels),
            "purposes": list(purposes),
            "period": {
                "start": start or now - timedelta(days=1),
                "end": end or now + timedelta(days=30),
            },
        },
    )


def consent_ended(kind: str, granted: Event, version: int = 2) -> Event:
    patient = granted.data["patient"]
    return new_event(
        kind,
        source_service="consent",
        subject=patient,
        actor=f"patient:{patient}",
        data={"consent_id": granted.data["consent_id"], "patient": patient, "version": version},
    )


@dataclass
class Records:
    """The records service under test, and what a test needs to drive and inspect it."""

    client: FlaskClient
    engine: Engine
    sessions: sessionmaker[Session]
    relay: OutboxRelay

    def publish(self) -> None:
        wait_until_published(self.relay)

    def project(self, event: Event) -> bool:
        """Hand a consent event to the projection as the consumer loop would."""
        origin = Origin(TOPIC_CONSENT, 0, 0)
        return handle_once(self.sessions, CONSUMER, HANDLERS[event.type], event, origin)

    def write(self, headers: dict[str, str], patient: str, resource: dict[str, Any]) -> str:
        response = self.client.post(f"/patients/{patient}/records", json=resource, headers=headers)
        assert response.status_code == 201, response.json
        return str(response.json["id"])

    def rows(self, table_name: str, **where: Any) -> int:
        table = metadata.tables[table_name]
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.sessions() as session:
            return int(session.execute(query).scalar_one())
