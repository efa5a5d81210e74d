"""The consent web application (gunicorn: `services.consent.app:create_app()`, port 8002)."""

from __future__ import annotations

from flask import Flask

from services.consent.api import blp
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.http import create_service_app, database_ready, kafka_ready
from shared.telemetry import instrument_engine, setup_logging, setup_tracing


def create_app(settings: Settings | None = None) -> Flask:
    """The consent API over the database of `settings` (from the environment by default)."""
    settings = settings or Settings.from_env("consent")
    setup_logging("consent")
    setup_tracing("consent")
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    app = create_service_app(
        settings,
        title="caretrail consent",
        description="Consent grants as an event-sourced aggregate, and access decisions.",
        blueprints=[blp],
        ready_checks={
            "database": database_ready(engine),
            "kafka": kafka_ready(settings.kafka_bootstrap_servers),
        },
    )
    app.extensions["consent"] = session_factory(engine)
    return app
