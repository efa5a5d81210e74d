"""The migrations build exactly the schema the code declares, append-only trigger included."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.audit.store import metadata
from services.audit.worker import MIGRATIONS
from shared.db import make_engine
from shared.migrations import upgrade


def test_upgrading_a_fresh_database_to_head_matches_the_declared_tables(database_url):
    upgrade(MIGRATIONS, database_url)

    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_migrated_trail_refuses_updates_and_deletes(database_url):
    upgrade(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO entries (event_id, type, time, actor, patient, record_ids, categories,"
                ' consent_ids, source, topic, partition, "offset", seq, prev_hash, hash) VALUES '
                "('e1', 't', now(), 'system', 'p', '[]', '[]', '[]', 's', 't', 0, 0, 1, 'a', 'b')"
            )
        )
    for statement in ("UPDATE entries SET actor = 'x'", "DELETE FROM entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
