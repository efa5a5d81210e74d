"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.records.store import metadata
from services.records.worker import MIGRATIONS
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
