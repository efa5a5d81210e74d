"""The consent web application (gunicorn: `services.consent.app:create_app()`, port 8002)."""

from __future__ import annotations

from flask import Flask

from services.consent.api import blp
from services.consent.fhir_api import blp as fhir_blp
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.fhir import mount
from shared.http import create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    """The consent API over the database of `settings` (from the environment by default)."""
    settings = settings or Settings.from_env("consent")
    engine = make_engine(settings.database_url)
    app = create_service_app(
        settings,
        title="caretrail consent",
        description="Consent grants as an event-sourced aggregate, and access decisions.",
        blueprints=[blp, fhir_blp],
        engine=engine,
    )
    app.extensions["consent"] = session_factory(engine)
    mount(app)
    return app
