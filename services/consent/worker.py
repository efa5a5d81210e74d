"""The consent worker: the relay that publishes the event table, the expiry scheduler, and
the consumer of `patient.erased`."""

from __future__ import annotations

from pathlib import Path

from services.consent.consumers import HANDLERS
from services.consent.ledger import expiry_job
from services.consent.store import EVENTS_TABLE
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.events import TOPIC_RECORDS
from shared.telemetry import instrument_engine
from shared.worker import Worker, run_worker_process

MIGRATIONS = Path(__file__).parent / "migrations"


def build_worker(settings: Settings) -> Worker:
    """A worker over the database and broker of `settings`.

    `CARETRAIL_CONSENT_EXPIRY_INTERVAL_SECONDS` (default 1) sets how often expiry runs.
    """
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    interval = float(settings.extra.get("expiry_interval_seconds", "1"))
    return Worker(
        settings=settings,
        engine=engine,
        consumer_group="consent",
        topics=[TOPIC_RECORDS],
        handlers=HANDLERS,
        outbox_table=EVENTS_TABLE,
        jobs={"expiry": expiry_job(session_factory(engine), interval)},
    )


def main(argv: list[str] | None = None) -> int:
    """Run the consent worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process("consent", MIGRATIONS, build_worker)
