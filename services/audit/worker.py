"""The audit worker: the trail's consumer of every fact topic, its outbox relay (break-glass
reviews), the checkpoint signer and the scheduled verification of every chain."""

from __future__ import annotations

from pathlib import Path

from services.audit.checkpoints import DEFAULT_INTERVAL_SECONDS, checkpoint_job
from services.audit.consumers import HANDLERS
from services.audit.signing import signing_key
from services.audit.store import AUDIT_CONSUMER
from services.audit.verification import VERIFY_INTERVAL_SECONDS, verification_job
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
    verify_every = float(settings.extra.get("verify_interval_seconds", VERIFY_INTERVAL_SECONDS))
    sessions = session_factory(engine)
    key = signing_key(settings)
    return Worker(
        settings=settings,
        engine=engine,
        consumer_group=settings.extra.get("consumer_group", AUDIT_CONSUMER),
        topics=FACT_TOPICS,
        handlers=HANDLERS,
        jobs={
            "checkpoints": checkpoint_job(sessions, key, interval),
            "verification": verification_job(sessions, key, verify_every),
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Run the audit worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process("audit", MIGRATIONS, build_worker)
