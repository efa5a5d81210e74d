"""The alembic migrations build exactly the tables the code declares."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import services.notify
from services.notify.store import metadata
from shared.db import make_engine
from shared.migrations import upgrade

MIGRATIONS = Path(services.notify.__file__).parent / "migrations"


def test_upgrading_an_empty_database_to_head_matches_the_metadata(database_url):
    upgrade(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
    finally:
        engine.dispose()
    assert diff == []
