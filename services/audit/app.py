"""The audit web application."""

from __future__ import annotations

from flask import Flask

from services.audit.api import AuditContext, blp
from services.audit.console import console
from services.audit.directory import load_directory
from services.audit.fhir_api import blp as fhir_blp
from services.audit.signing import public_pem, signing_key
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.fhir import mount
from shared.http import create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    """The audit service's Flask app (gunicorn: `services.audit.app:create_app()`)."""
    settings = settings or Settings.from_env("audit")
    engine = make_engine(settings.database_url)
    key = signing_key(settings)
    app = create_service_app(
        settings,
        title="caretrail audit",
        description="The tamper-evident trail of every caretrail fact.",
        blueprints=[blp, fhir_blp],
        engine=engine,
    )
    app.register_blueprint(console)
    app.extensions["audit"] = AuditContext(
        sessions=session_factory(engine),
        public_key=key.public_key(),
        public_key_pem=public_pem(key),
        directory=load_directory(settings),
    )
    mount(app)
    return app
