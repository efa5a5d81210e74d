"""Fixtures shared by every test: a real Kafka broker, real databases, tokens.

Kafka: the session starts its own KRaft broker on a free port in a temp dir, unless
KAFKA_BOOTSTRAP_SERVERS names one. PostgreSQL: the session starts its own cluster, unless
CARETRAIL_TEST_POSTGRES_URL names a server it may create databases on.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from caretrail.kafka_server import LocalBroker, free_port
from caretrail.postgres_server import create_database, start_cluster
from shared.auth import mint_token
from shared.broker import ensure_topics
from shared.config import Settings
from tests.support.kafka_tap import KafkaTap

# The tests run on a developer's machine: the published development secrets are allowed
# (tests of the refusal outside local mode unset it). Set before any settings are read.
os.environ.setdefault("CARETRAIL_LOCAL", "1")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        ensure_topics(given)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="caretrail-kafka-") as tmp:
        broker = LocalBroker(data_dir=Path(tmp), port=free_port(), controller_port=free_port())
        broker.start(timeout_seconds=180)  # a busy machine starts a JVM slowly
        try:
            yield broker.bootstrap
        finally:
            broker.stop(timeout_seconds=5)  # its data is thrown away: no need to wait long


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    given = os.environ.get("CARETRAIL_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    cluster = start_cluster(free_port())
    try:
        yield cluster.admin_url
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    return create_database(admin_url, f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def kafka_tap(kafka_bootstrap: str) -> Callable[..., KafkaTap]:
    """`kafka_tap(topic, ...)`: a reader of what is written to those topics from now on."""
    taps: list[KafkaTap] = []

    def open_tap(*topics: str) -> KafkaTap:
        tap = KafkaTap(kafka_bootstrap, *topics)
        taps.append(tap)
        return tap

    yield open_tap  # type: ignore[misc]
    for tap in taps:
        tap.close()


@pytest.fixture
def token() -> Callable[..., str]:
    """`token(role, sub, org=..., patient=..., scope=...)`: a valid local bearer token."""
    settings = Settings.from_env("test")

    def make(role: str, sub: str, **claims: object) -> str:
        return mint_token(settings, role=role, sub=sub, **claims)  # type: ignore[arg-type]

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
