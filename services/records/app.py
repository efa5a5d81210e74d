"""The records web application."""

from __future__ import annotations

from flask import Flask

from services.records.api import blp
from services.records.chart import Chart
from services.records.fhir_api import blp as fhir_blp
from services.records.patient_page import PageSetup, patient_page
from services.records.reminding import ReminderBook, rule_table
from services.records.sealing import KeyRing, master_key_from
from services.records.store import ChartUnitOfWork
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.fact_writer import FactWriter
from shared.fhir import mount
from shared.http import create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    """The records app for `settings` (from the environment when not given)."""
    settings = settings or Settings.from_env("records")
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    keyring = KeyRing(master_key_from(settings.extra))
    app = create_service_app(
        settings,
        title="caretrail records",
        description="The patient chart: FHIR R4 records under the patient's consent.",
        blueprints=[blp, fhir_blp],
        engine=engine,
    )
    app.register_blueprint(patient_page)
    chart = Chart(
        lambda: ChartUnitOfWork(sessions), keyring, engine=engine, facts=FactWriter(engine)
    )
    app.extensions["records"] = chart
    app.extensions["records.reminders"] = ReminderBook(
        chart, lambda: ChartUnitOfWork(sessions), rule_table()
    )
    app.extensions["records.engine"] = engine
    app.extensions["records.patient_page"] = PageSetup.from_env()
    mount(app)
    return app
