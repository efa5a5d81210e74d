"""The read model is a projection of the event table; the migrations build the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, update

import services.consent
from caretrail import cli
from services.consent import ledger
from services.consent.store import consents, metadata
from shared.db import make_engine
from shared.migrations import upgrade
from tests.integration.consent.conftest import ConsentService

MIGRATIONS = Path(services.consent.__file__).parent / "migrations"


def test_rebuilding_the_read_model_from_the_event_table_gives_the_same_state(
    service: ConsentService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    now = datetime.now(UTC)
    alice, bob = service.new_patient(), service.new_patient()
    kept = service.grant(alice, categories=["*"], security_labels=["SUD", "SEX"])
    revoked = service.grant(alice, grantee={"type": "organization", "id": "org-a"})
    service.client.post(f"/consents/{revoked['id']}/revoke", headers=alice.headers)
    soon = {"start": now.isoformat(), "end": (now + timedelta(seconds=1)).isoformat()}
    expiring = service.grant(bob, period=soon, purposes=["HRESCH", "TREAT"])
    assert ledger.expire_due(service.sessions(), now + timedelta(seconds=2)) == 1
    before = service.read_model()
    assert [row["status"] for row in before] == ["active", "revoked", "expired"]
    assert [row["consent_id"] for row in before] == [kept["id"], revoked["id"], expiring["id"]]
    # A read model gone wrong: one row lost, one changed behind the events' back.
    with service.engine.begin() as conn:
        conn.execute(delete(consents).where(consents.c.consent_id == kept["id"]))
        conn.execute(update(consents).values(status="active"))

    monkeypatch.setenv("CARETRAIL_CONSENT_DATABASE_URL", service.database_url)
    assert cli.main(["consent", "rebuild"]) == 0

    assert service.read_model() == before
    assert "3 consents" in capsys.readouterr().out


def test_the_migrations_build_exactly_the_tables_the_code_declares(database_url: str):
    upgrade(MIGRATIONS, database_url)

    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()
