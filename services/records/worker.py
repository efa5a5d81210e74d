"""The records worker: the consent projection's consumer, the reminder watch over records' own
chart events and its daily sweep, and the outbox relay."""

from __future__ import annotations

from pathlib import Path

from services.records.consumers import HANDLERS
from services.records.reminding import ReminderWatch, rule_table
from services.records.sealing import KeyRing, master_key_from
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.events import TOPIC_CONSENT, TOPIC_RECORDS
from shared.telemetry import instrument_engine
from shared.worker import Worker, run_worker_process

CONSUMER_GROUP = "records"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_worker(settings: Settings) -> Worker:
    """A worker over the database and broker of `settings`.

    `CARETRAIL_RECORDS_REMINDER_SWEEP_SECONDS` (default 60) sets how often it looks for charts
    whose reminders were not evaluated today.
    """
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    watch = ReminderWatch(rule_table(), KeyRing(master_key_from(settings.extra)))
    sweep_seconds = float(settings.extra.get("reminder_sweep_seconds", "60"))
    return Worker(
        settings=settings,
        engine=engine,
        consumer_group=CONSUMER_GROUP,
        topics=[TOPIC_CONSENT, TOPIC_RECORDS],
        handlers={**HANDLERS, **watch.handlers()},
        jobs={"reminder-sweep": watch.daily(session_factory(engine), sweep_seconds)},
    )


def main(argv: list[str] | None = None) -> int:
    """Run the records worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process("records", MIGRATIONS, build_worker)
