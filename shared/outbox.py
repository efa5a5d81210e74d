"""The transactional outbox: events are rows written with the state they describe, and a relay
publishes them to Kafka afterwards.

The relay reads *unsent* rows in `seq` order rather than "rows after the last seq I saw": in
PostgreSQL a row with a smaller seq can commit after one with a larger seq, and a reader
tailing by position would skip it for good. Publishing is at-least-once (a crash between the
broker's ack and `sent_at` being written publishes the batch again); consumers deduplicate on
the event id. Rows of one patient keep their commit order on one partition: the producer is
idempotent, so a failed batch fails from its first unacknowledged message on.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    column,
    func,
    select,
    table,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON

from shared.events import Event, to_kafka
from shared.telemetry import current_traceparent

log = logging.getLogger(__name__)

OUTBOX = "outbox"


def add_outbox_table(metadata: MetaData, name: str = OUTBOX, *extra: Column[Any]) -> Table:
    """Declare the outbox table (with optional extra columns) in a service's metadata."""
    return Table(
        name,
        metadata,
        Column(
            "seq",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("type", String(120), nullable=False),
        Column("topic", String(120), nullable=False),
        Column("key", String(200), nullable=False),
        Column("headers", JSON, nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        *extra,
        Index(
            f"ix_{name}_unsent",
            "seq",
            sqlite_where=Column("sent_at").is_(None),
            postgresql_where=Column("sent_at").is_(None),
        ),
    )


@functools.cache
def _rows_view(name: str) -> Any:
    # A lightweight view of the outbox columns, usable whatever MetaData declared the table.
    # Built once per name: every request that emits an event appends through it.
    return table(
        name,
        column("seq"),
        column("event_id"),
        column("type"),
        column("topic"),
        column("key"),
        column("headers", JSON),
        column("value", LargeBinary),
        column("created_at"),
        column("sent_at"),
    )


def outbox_row(event: Event) -> dict[str, Any]:
    """The outbox columns of `event`, with the current trace context if it has none."""
    if event.traceparent is None:
        event = replace(event, traceparent=current_traceparent())
    record = to_kafka(event)
    return {
        "event_id": event.id,
        "type": event.type,
        "topic": record.topic,
        "key": record.key.decode(),
        "headers": [[name, value.decode()] for name, value in record.headers],
        "value": record.value,
        "created_at": datetime.now(UTC),
    }


@functools.cache
def _insert(name: str) -> Any:
    return _rows_view(name).insert()


def append(session: Session, *events: Event, table_name: str = OUTBOX) -> None:
    """Write events to the outbox in the caller's transaction (the caller commits)."""
    if events:
        session.execute(_insert(table_name), [outbox_row(e) for e in events])


class PublishFailed(RuntimeError):
    pass


class OutboxRelay:
    """Publishes pending outbox rows in order and marks them sent."""

    def __init__(
        self,
        engine: Engine,
        producer: Any,
        *,
        table_name: str = OUTBOX,
        batch_size: int = 500,
        idle_seconds: float = 0.02,
        send_timeout_seconds: float = 30.0,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._rows = _rows_view(table_name)
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._send_timeout = send_timeout_seconds

    def publish_pending(self) -> int:
        """Publish one batch of pending rows; answer how many were published."""
        rows = self._pending()
        if not rows:
            return 0
        self._send(rows)
        with self._engine.begin() as conn:
            conn.execute(
                update(self._rows)
                .where(self._rows.c.seq.in_([r.seq for r in rows]))
                .values(sent_at=datetime.now(UTC))
            )
        return len(rows)

    def _pending(self) -> Sequence[Any]:
        with self._engine.begin() as conn:
            return conn.execute(
                select(
                    self._rows.c.seq,
                    self._rows.c.topic,
                    self._rows.c.key,
                    self._rows.c.headers,
                    self._rows.c.value,
                )
                .where(self._rows.c.sent_at.is_(None))
                .order_by(self._rows.c.seq)
                .limit(self._batch_size)
            ).all()

    def _send(self, rows: Sequence[Any]) -> None:
        try:
            futures = [
                self._producer.send(
                    row.topic,
                    key=row.key.encode(),
                    value=row.value,
                    headers=[(name, value.encode()) for name, value in row.headers],
                )
                for row in rows
            ]
            self._producer.flush(timeout=self._send_timeout)
            for future in futures:
                future.get(timeout=self._send_timeout)
        except Exception as err:
            raise PublishFailed(f"{type(err).__name__}: {err}") from err

    def run(self, stop: threading.Event, *, max_backoff_seconds: float = 5.0) -> None:
        """Publish until `stop` is set, backing off while the broker or database is down."""
        backoff = 0.1
        while not stop.is_set():
            try:
                published = self.publish_pending()
                backoff = 0.1
            except Exception as err:
                log.warning("outbox relay: %s; retrying in %.1fs", type(err).__name__, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff_seconds)
                continue
            if published < self._batch_size:
                stop.wait(self._idle_seconds)

    def pending_count(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(self._rows)
                    .where(self._rows.c.sent_at.is_(None))
                ).scalar_one()
            )


def wait_until_published(relay: OutboxRelay, timeout_seconds: float = 30.0) -> None:
    """Publish until nothing is pending (tests and one-shot commands)."""
    deadline = time.monotonic() + timeout_seconds
    while relay.pending_count():
        if time.monotonic() > deadline:
            raise TimeoutError("outbox still has pending rows")
        relay.publish_pending()
