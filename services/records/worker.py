"""The records worker: the consent projection's consumer and the outbox relay."""

from __future__ import annotations

from pathlib import Path

from services.records.consumers import HANDLERS
from shared.config import Settings
from shared.db import make_engine
from shared.events import TOPIC_CONSENT
from shared.migrations import upgrade
from shared.telemetry import instrument_engine, setup_logging, setup_tracing
from shared.worker import Worker

CONSUMER_GROUP = "records"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_worker(settings: Settings) -> Worker:
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    return Worker(
        settings=settings,
        engine=engine,
        consumer_group=CONSUMER_GROUP,
        topics=[TOPIC_CONSENT],
        handlers=HANDLERS,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the worker until SIGTERM or SIGINT, on a database at the latest migration."""
    setup_logging("records")
    setup_tracing("records")
    settings = Settings.from_env("records")
    upgrade(MIGRATIONS, settings.database_url)
    build_worker(settings).run()
    return 0
