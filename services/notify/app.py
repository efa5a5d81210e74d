"""The notify web app: inbox, preferences and webhooks of each patient."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy.orm import Session

from services.notify.api import blp
from services.notify.channels import Resolver, resolve
from services.notify.config import NotifyConfig
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.http import create_service_app


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NotifyContext:
    """What the views need, built once per app."""

    sessions: Callable[[], Session]
    config: NotifyConfig
    resolve: Resolver
    clock: Callable[[], datetime] = _now


def create_app(settings: Settings | None = None, *, resolver: Resolver = resolve) -> Flask:
    settings = settings or Settings.from_env("notify")
    engine = make_engine(settings.database_url)
    app = create_service_app(
        settings,
        title="caretrail notify",
        description="Tells patients what happens to their data: inbox, webhooks, email.",
        blueprints=[blp],
        engine=engine,
    )
    app.extensions["notify"] = NotifyContext(
        sessions=session_factory(engine),
        config=NotifyConfig.from_settings(settings),
        resolve=resolver,
    )
    return app
