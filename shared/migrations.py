"""Alembic, driven from code: each service keeps its revisions in `services/<name>/migrations`.

A service's `migrations/env.py` is two lines (`run_migrations(metadata)`); `upgrade` is what
`caretrail migrate` and the worker's start-up call.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from shared.db import make_engine, normalize_url


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # ConfigParser interpolation would read a % in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Bring the database of `database_url` to `revision`."""
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's `env.py` (online mode only: we always have the database)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None  # set by alembic_config; alembic's own CLI is not used here
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
