"""Fixtures of the audit service's integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from services.audit.app import create_app
from services.audit.consumers import HANDLERS
from services.audit.store import metadata
from shared.config import Settings
from shared.db import create_schema, make_engine, session_factory
from shared.events import FACT_TOPICS, Event
from shared.inbox import Origin
from shared.kafka_access import client_options


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing-key.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str, key_file: Path) -> Settings:
    return Settings.from_env(
        "audit",
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        signing_key_file=str(key_file),
        checkpoint_interval_seconds="0.3",
        consumer_group=f"audit-test-{uuid4()}",
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    create_schema(engine, metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def seed(engine: Engine) -> Callable[..., list[Event]]:
    """`seed(*events, partition=0)`: append facts as if consumed at the next offsets."""
    sessions = session_factory(engine)
    next_offset: dict[tuple[str, int], int] = {}

    def append(*events: Event, partition: int = 0) -> list[Event]:
        with sessions() as session:
            for event in events:
                key = (event.topic, partition)
                offset = next_offset.get(key, 0)
                next_offset[key] = offset + 1
                HANDLERS[event.type](session, event, Origin(event.topic, partition, offset))
            session.commit()
        return list(events)

    return append


def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit `group`'s offsets at the current end of every fact topic, so a worker of that
    group reads only what is written from now on, not the whole shared broker."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        **client_options(),
    )
    try:
        partitions = [
            TopicPartition(t, p) for t in FACT_TOPICS for p in consumer.partitions_for_topic(t)
        ]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def wait_until(check: Callable[[], Any], timeout_seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        time.sleep(0.1)
