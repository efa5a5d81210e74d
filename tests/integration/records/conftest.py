"""A records app on a fresh database of each kind, publishing to the session's Kafka broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from services.records.app import create_app
from services.records.store import metadata
from shared.broker import make_producer
from shared.config import Settings
from shared.db import create_schema, session_factory
from shared.outbox import OutboxRelay
from tests.integration.records.support import MASTER_KEY, Records


@pytest.fixture
def records(database_url: str, kafka_bootstrap: str) -> Iterator[Records]:
    settings = Settings.from_env(
        "records",
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        master_key=MASTER_KEY,
    )
    app = create_app(settings)
    engine: Engine = app.extensions["records.engine"]
    create_schema(engine, metadata)
    producer = make_producer(kafka_bootstrap)
    yield Records(app.test_client(), engine, session_factory(engine), OutboxRelay(engine, producer))
    producer.close(timeout=5)
    engine.dispose()
