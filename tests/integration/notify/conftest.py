"""A notify app and database per test, with a local webhook receiver and SMTP server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from caretrail.kafka_server import free_port
from caretrail.postgres_server import create_database
from services.notify.app import create_app
from services.notify.config import NotifyConfig
from services.notify.consumers import handlers
from services.notify.delivery import DeliveryQueue
from services.notify.store import deliveries, metadata
from services.notify.worker import delivery_queue
from shared.broker import make_producer
from shared.config import Settings
from shared.db import create_schema, make_engine, session_factory
from shared.events import Event
from shared.inbox import Handler, Origin, handle_in_one_transaction, handle_once
from shared.outbox import OutboxRelay, wait_until_published
from tests.conftest import bearer

FAST_RETRIES = {
    "allow_loopback_webhooks": "true",
    "delivery_max_attempts": "4",
    "delivery_first_delay_seconds": "0.01",
    "delivery_max_delay_seconds": "0.04",
    "send_timeout_seconds": "5",
}


@dataclass
class Notify:
    """One notify service over a fresh database: its app, its consumers, its queue."""

    settings: Settings
    engine: Engine
    app: Flask
    sessions: Callable[[], Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.engine)

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def handle(self, event: Event, consumer: str = "notify") -> bool:
        """Consume `event` as the worker does (inbox and all); answer whether it ran."""
        origin = Origin(event.topic, 0, 0)
        return handle_once(self.sessions, consumer, self.handlers[event.type], event, origin)

    def handle_batch(self, events: list[Event], consumer: str = "notify") -> int:
        """Consume `events` as one poll of one partition, in one transaction; answer how many
        ran."""
        batch = [
            (event, Origin(event.topic, 0, offset), self.handlers[event.type])
            for offset, event in enumerate(events)
        ]
        return handle_in_one_transaction(self.sessions, consumer, batch)

    @property
    def handlers(self) -> dict[str, Handler]:
        return handlers(read_window=NotifyConfig.from_settings(self.settings).read_window)

    def queue(self) -> DeliveryQueue:
        return delivery_queue(self.sessions, NotifyConfig.from_settings(self.settings))

    def deliver_all(self, timeout_seconds: float = 20.0) -> None:
        """Run the delivery queue until no delivery is pending."""
        queue = self.queue()
        deadline = time.monotonic() + timeout_seconds
        while self.pending():
            if time.monotonic() > deadline:
                raise TimeoutError("deliveries still pending")
            if not queue.deliver_due():
                time.sleep(0.01)

    def publish_outbox(self) -> None:
        """Publish what notify wrote to its outbox, as its worker's relay does."""
        producer = make_producer(self.settings.kafka_bootstrap_servers)
        try:
            wait_until_published(OutboxRelay(self.engine, producer))
        finally:
            producer.close(timeout=5)

    def pending(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).where(deliveries.c.state == "pending")
            return int(conn.execute(query).scalar_one())

    def inbox(self, patient: str, token: str, **query: Any) -> list[dict[str, Any]]:
        response = self.client.get(
            f"/patients/{patient}/notifications", query_string=query, headers=bearer(token)
        )
        assert response.status_code == 200, response.get_json()
        items: list[dict[str, Any]] = response.get_json()["items"]
        return items


@pytest.fixture
def make_notify(database_url: str, kafka_bootstrap: str) -> Iterator[Callable[..., Notify]]:
    engines: list[Engine] = []

    def make(database: str = database_url, **overrides: Any) -> Notify:
        settings = Settings.from_env(
            "notify",
            database_url=database,
            kafka_bootstrap_servers=kafka_bootstrap,
            **{**FAST_RETRIES, **overrides},
        )
        engine = make_engine(database)
        engines.append(engine)
        create_schema(engine, metadata)
        return Notify(settings, engine, create_app(settings))

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def notify(make_notify: Callable[..., Notify]) -> Notify:
    return make_notify()


@pytest.fixture
def another_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """A second fresh database of the kind `database_url` is."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'another.sqlite3'}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    return create_database(admin_url, f"t_{uuid.uuid4().hex[:16]}")


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first `failures` calls (None: all)."""

    def __init__(self, failures: int | None = 0) -> None:
        self.calls: list[Call] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                failing = failures is None or len(receiver.calls) < failures
                status = 503 if failing else 204
                receiver.calls.append(Call(dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/caretrail"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    opened: list[Receiver] = []

    def open_receiver(failures: int | None = 0) -> Receiver:
        opened.append(Receiver(failures))
        return opened[-1]

    yield open_receiver
    for r in opened:
        r.close()


class Mailbox:
    """aiosmtpd handler keeping every envelope it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Smtp:
    url: str
    mailbox: Mailbox


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Smtp(f"smtp://127.0.0.1:{controller.port}", mailbox)
    finally:
        controller.stop()
