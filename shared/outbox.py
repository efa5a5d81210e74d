"""The transactional outbox: events are rows written with the state they describe, and a relay
publishes them to Kafka afterwards.

The relay reads *unsent* rows in `seq` order rather than "rows after the last seq I saw": in
PostgreSQL a row with a smaller seq can commit after one with a larger seq, and a reader
tailing by position would skip it for good. Publishing is at-least-once (a crash between the
broker's ack and `sent_at` being written publishes the batch again); consumers deduplicate on
the event id. Rows of one patient keep their commit order on one partition: the producer is
idempotent, so a failed batch fails from its first unacknowledged message on.

However many workers run, one relay publishes an outbox: with a `Fence` (shared/relay_lease.py)
the relay holds a lease, produces each batch in a Kafka transaction and marks it sent only while
its fencing token is current.

The relay wakes when there is work rather than on a fixed poll: on PostgreSQL `append` NOTIFYs
the relay's LISTENing connection (delivered at commit); on SQLite the relay watches the file's
`PRAGMA data_version`, a read of shared memory, looking ever less often while nothing changes.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
    table,
    text,
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
        insert_rows(session, [outbox_row(e) for e in events], table_name)


def insert_rows(
    connection: Session | Connection, rows: Sequence[dict[str, Any]], table_name: str = OUTBOX
) -> None:
    """Insert `outbox_row`s in the caller's transaction, and wake the relay at its commit."""
    connection.execute(_insert(table_name), rows)
    wake_relay(connection, table_name)


def relay_channel(table_name: str) -> str:
    """The PostgreSQL LISTEN/NOTIFY channel on which the relay of `table_name` waits."""
    return f"caretrail_{table_name}"


@functools.cache
def _notify(table_name: str) -> Any:
    return text(f"NOTIFY {relay_channel(table_name)}")


def wake_relay(connection: Session | Connection, table_name: str = OUTBOX) -> None:
    """Wake the relay of `table_name` when the caller's transaction commits (PostgreSQL NOTIFY;
    nothing on SQLite, where the relay notices any commit to the file). Whoever inserts outbox
    rows without `append` calls it in the same transaction, or the rows wait for the relay's
    next look (at most `idle_seconds`)."""
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    if bind.dialect.name == "postgresql":
        connection.execute(_notify(table_name))


class PublishFailed(RuntimeError):
    pass


class Fence(Protocol):
    """What a relay holding a lease does around each batch (see shared/relay_lease.py)."""

    def open_batch(self) -> None:
        """Refuse (raise) unless still the holder; then begin the batch's Kafka transaction."""
        ...

    def mark_sent(
        self,
        connection: Connection,
        mark: Any,
        bounds: dict[str, Any],
        rows: Sequence[Any],
        first: Any,
    ) -> None:
        """Run `mark` (with `bounds`) on the batch `rows` only while the token is current, else
        raise; `first` is the broker's metadata of the batch's first message."""
        ...

    def close_batch(self) -> None:
        """Commit the batch's Kafka transaction."""
        ...

    def abandon(self) -> None:
        """End the term after a failed batch: its producer may be fenced or mid-transaction."""
        ...


_FIRST_LOOK_SECONDS = 0.001
# How long one wait for a notification lasts at most, so that `stop` is noticed soon.
_LONGEST_LISTEN_SECONDS = 0.25


class OutboxRelay:
    """Publishes pending outbox rows in order and marks them sent.

    `run` publishes batch after batch while rows are pending; then it waits for a wake-up,
    looking 1 ms later, then 2, 4 ... and at most `idle_seconds` apart while none comes. On
    SQLite a look is a `PRAGMA data_version` and the outbox is read only when the file changed;
    on PostgreSQL a look reads the outbox (rows written without a NOTIFY are seen so).
    """

    def __init__(
        self,
        engine: Engine,
        producer: Any,
        *,
        table_name: str = OUTBOX,
        batch_size: int = 500,
        idle_seconds: float = 0.02,
        send_timeout_seconds: float = 30.0,
        fence: Fence | None = None,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._table_name = table_name
        self._rows = _rows_view(table_name)
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._send_timeout = send_timeout_seconds
        self._select_pending = _select_pending(table_name, batch_size)
        self._mark_sent = _mark_sent(table_name, engine.dialect.name)
        self._fence = fence

    def publish_pending(self) -> int:
        """Publish one batch of pending rows; answer how many were published."""
        fence = self._fence
        if fence is None:
            return self._publish_batch()
        try:
            return self._publish_fenced_batch(fence)
        except BaseException:
            fence.abandon()
            raise

    def _publish_batch(self) -> int:
        with self._engine.begin() as conn:
            rows = conn.execute(self._select_pending).all()
        if not rows:
            return 0
        self._send(rows)
        with self._engine.begin() as conn:
            conn.execute(self._mark_sent, _batch_bounds(rows, self._engine.dialect.name))
        return len(rows)

    def _publish_fenced_batch(self, fence: Fence) -> int:
        with self._engine.begin() as conn:
            rows = conn.execute(self._select_pending).all()
        if not rows:
            return 0
        fence.open_batch()
        futures = self._send(rows)
        with self._engine.begin() as conn:
            bounds = _batch_bounds(rows, self._engine.dialect.name)
            fence.mark_sent(conn, self._mark_sent, bounds, rows, futures[0].value)
        fence.close_batch()
        return len(rows)

    def _send(self, rows: Sequence[Any]) -> list[Any]:
        """Send every row and wait until the broker acknowledged them all."""
        send = self._producer.send
        try:
            # Headers are stored as JSON text: decoding them here costs less than the JSON type's
            # per-row decoder (the relay's hottest line after the client's own `send`).
            futures = [
                send(
                    topic,
                    key=key.encode(),
                    value=value,
                    headers=[(name, text.encode()) for name, text in orjson.loads(headers)],
                )
                for _seq, topic, key, headers, value in rows
            ]
            self._producer.flush(timeout=self._send_timeout)
        except Exception as err:
            raise PublishFailed(f"{type(err).__name__}: {err}") from err
        # After a flush every future is done; the first failure (if any) is the batch's.
        failed = next((f for f in futures if not f.succeeded()), None)
        if failed is not None:
            error = failed.exception
            raise PublishFailed(f"{type(error).__name__}: {error}")
        return futures

    def run(self, stop: threading.Event, *, max_backoff_seconds: float = 5.0) -> None:
        """Publish until `stop` is set: at once while rows are pending, then as soon as new rows
        may be there; back off while the broker or database is down."""
        wakeup: _Wakeup | None = None
        look_after = _FIRST_LOOK_SECONDS
        backoff = 0.1
        try:
            while not stop.is_set():
                try:
                    if wakeup is None:
                        # Opened before the first look, so nothing committed after it is missed.
                        wakeup = _open_wakeup(self._engine, self._table_name)
                    published = self.publish_pending()
                    backoff = 0.1
                    if published == self._batch_size:
                        continue  # more are waiting
                    # Look again soon after finding rows (more tend to follow), later if not.
                    look_after = _FIRST_LOOK_SECONDS if published else self._later(look_after)
                    while not wakeup.wait(stop, look_after) and not stop.is_set():
                        look_after = self._later(look_after)
                except Exception as err:
                    log.warning("outbox relay: %s; retrying in %.1fs", type(err).__name__, backoff)
                    if wakeup is not None:
                        wakeup.close()
                        wakeup = None
                    stop.wait(backoff)
                    backoff = min(backoff * 2, max_backoff_seconds)
        finally:
            if wakeup is not None:
                wakeup.close()

    def _later(self, look_after: float) -> float:
        return min(look_after * 2, self._idle_seconds)

    def pending_count(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(self._rows)
                    .where(self._rows.c.sent_at.is_(None))
                ).scalar_one()
            )


@functools.cache
def _select_pending(table_name: str, batch_size: int) -> Any:
    """The oldest unsent rows, only the columns a message needs, headers as their JSON text."""
    rows = _rows_view(table_name)
    return (
        select(rows.c.seq, rows.c.topic, rows.c.key, cast(rows.c.headers, Text), rows.c.value)
        .where(rows.c.sent_at.is_(None))
        .order_by(rows.c.seq)
        .limit(batch_size)
    )


@functools.cache
def _mark_sent(table_name: str, dialect: str) -> Any:
    """One statement that marks a batch sent, whatever its size.

    SQLite has one writer at a time and gives a new row a seq above every existing one, so every
    unsent row from a batch's first seq to its last is in the batch: a range marks it. PostgreSQL
    draws seqs before commit, so a row inside the range may commit after the batch was read (and
    not be in it): there the batch's seqs go as one array parameter.
    """
    rows = _rows_view(table_name)
    if dialect == "postgresql":
        in_batch = rows.c.seq == any_(bindparam("seqs", type_=ARRAY(BigInteger)))
    else:
        in_batch = rows.c.seq.between(bindparam("first"), bindparam("last"))
    return (
        update(rows)
        .where(in_batch, rows.c.sent_at.is_(None))
        .values(sent_at=bindparam("now", type_=DateTime(timezone=True)))
    )


def _batch_bounds(rows: Sequence[Any], dialect: str) -> dict[str, Any]:
    """The parameters of `_mark_sent` for a batch read in seq order."""
    if dialect == "postgresql":
        return {"seqs": [row[0] for row in rows], "now": datetime.now(UTC)}
    return {"first": rows[0][0], "last": rows[-1][0], "now": datetime.now(UTC)}


class _Wakeup(Protocol):
    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait about `seconds`; answer whether rows may have been appended meanwhile."""
        ...

    def close(self) -> None: ...


def _open_wakeup(engine: Engine, table_name: str) -> _Wakeup:
    if engine.dialect.name == "postgresql":
        return _Notifications(engine, relay_channel(table_name))
    return _DataVersion(engine)


class _DataVersion:
    """SQLite: whether any other connection committed to the database file since the last look
    (`PRAGMA data_version`, a read of shared memory: no query of the outbox while idle).
    See https://www.sqlite.org/pragma.html#pragma_data_version"""

    def __init__(self, engine: Engine) -> None:
        self._connection = engine.raw_connection()  # one connection: the version is its own
        self._version = self._read()

    def _read(self) -> int:
        cursor = self._connection.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            row: Any = cursor.fetchone()
            return int(row[0])
        finally:
            cursor.close()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        stop.wait(seconds)
        version, self._version = self._version, self._read()
        return version != self._version

    def close(self) -> None:
        self._connection.close()


class _Notifications:
    """PostgreSQL: a connection of its own that LISTENs on the outbox's channel; `append`
    NOTIFYs it, and PostgreSQL delivers at commit. A wait ends early on a notification; either
    way the relay looks, since a writer that does not notify is seen only by looking."""

    def __init__(self, engine: Engine, channel: str) -> None:
        connection = engine.raw_connection()
        listener: Any = connection.driver_connection  # a psycopg.Connection
        connection.detach()  # it stays LISTENing: never hand it back to the pool
        listener.rollback()
        listener.autocommit = True
        listener.execute(f"LISTEN {channel}")
        self._listener = listener

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            listening = min(remaining, _LONGEST_LISTEN_SECONDS)
            if list(self._listener.notifies(timeout=listening, stop_after=1)):
                # The notifications of every commit meanwhile are answered by one look.
                list(self._listener.notifies(timeout=0))
                break
        return True

    def close(self) -> None:
        self._listener.close()


def wait_until_published(relay: OutboxRelay, timeout_seconds: float = 30.0) -> None:
    """Publish until nothing is pending (tests and one-shot commands)."""
    deadline = time.monotonic() + timeout_seconds
    while relay.pending_count():
        if time.monotonic() > deadline:
            raise TimeoutError("outbox still has pending rows")
        relay.publish_pending()
