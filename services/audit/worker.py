"""The audit worker: the trail's consumer of every fact topic, its outbox relay (break-glass
reviews) and the checkpoint signer."""

from __future__ import annotations

from pathlib import Path

from services.audit.checkpoints import DEFAULT_INTERVAL_SECONDS, checkpoint_job
from services.audit.consumers import HANDLERS
from services.audit.signing import signing_key
from services.audit.store import AUDIT_CONSUMER
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.events import FACT_TOPICS
from shared.telemetry import instrument_engine
from shared.worker import Worker, run_worker_process

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def build_worker(settings: Settings) -> Worker:
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    interval = float(settings.extra.get("checkpoint_interval_seconds", DEFAULT_INTERVAL_SECONDS))
    return Worker(
        settings=settings,
        engine=engine,
        consumer_group=settings.extra.get("consumer_group", AUDIT_CONSUMER),
        topics=FACT_TOPICS,
        handlers=HANDLERS,
        jobs={
            "checkpoints": checkpoint_job(session_factory(engine), signing_key(settings), interval)
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Run the audit worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process("audit", MIGRATIONS, build_worker)
