"""The records worker: the consent projection's consumer and the outbox relay."""

from __future__ import annotations

from pathlib import Path

from services.records.consumers import HANDLERS
from shared.config import Settings
from shared.db import make_engine
from shared.events import TOPIC_CONSENT
from shared.telemetry import instrument_engine
from shared.worker import Worker, run_worker_process

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
    """Run the records worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process("records", MIGRATIONS, build_worker)
