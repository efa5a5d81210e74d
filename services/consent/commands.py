"""`caretrail consent ...`: operator commands of the consent service."""

from __future__ import annotations

import argparse
from typing import Any

from services.consent.store import ConsentUnitOfWork
from shared.config import Settings
from shared.db import make_engine, session_factory


def register(commands: Any) -> None:
    """Add the `consent` command group to the `caretrail` CLI."""
    consent = commands.add_parser("consent", help="operate the consent service")
    actions = consent.add_subparsers(dest="consent_command", required=True)
    rebuild = actions.add_parser(
        "rebuild", help="rebuild the current consents from the consent event table"
    )
    rebuild.set_defaults(run=_rebuild)


def rebuild_read_model(database_url: str) -> int:
    """Replace the read model by the fold of every consent's events; answer the count."""
    engine = make_engine(database_url)
    try:
        with ConsentUnitOfWork(session_factory(engine)) as uow:
            count = uow.consents.rebuild()
            uow.commit()
        return count
    finally:
        engine.dispose()


def _rebuild(_args: argparse.Namespace) -> int:
    settings = Settings.from_env("consent")
    count = rebuild_read_model(settings.database_url)
    print(f"consent: read model rebuilt from the event table ({count} consents)")
    return 0
