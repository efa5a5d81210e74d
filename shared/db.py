"""Engines, sessions and the unit of work, for SQLite files (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and a transaction starts with `BEGIN IMMEDIATE`
unless it only reads: a deferred transaction that reads then writes fails with SQLITE_BUSY
instead of waiting for the lock, when another connection wrote in between.
See https://www.sqlite.org/lang_transaction.html#deferred_immediate_and_exclusive_transactions
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.events import Event
from shared.outbox import append as append_to_outbox

_READ_ONLY = "caretrail_read_only"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, set up for concurrent use by web and worker processes."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Work that only reads runs each statement in its own implicit transaction: no BEGIN
        # and no ROLLBACK to pay for, and a statement's snapshot is all it needs (readers ask
        # for the enforcement version in the statement that reads the record).
        if not conn.get_execution_options().get(_READ_ONLY, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Reading:
    """Connections for work that only reads, one kept per thread.

    On SQLite each statement is a transaction of its own that takes no write lock, so writers
    go on while a request reads; a request that then records a fact of its reading does so
    elsewhere (`shared.fact_writer`), as of a moment just after what it read. A thread keeps
    its connection between requests: taking one from the pool and giving it back cost a read
    more than its query. A connection that failed is dropped, and the next read opens another.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._engine.connect().execution_options(**{_READ_ONLY: True})
            if is_postgres(self._engine):
                # Each statement its own snapshot, as on SQLite: no BEGIN and ROLLBACK round
                # trips around a read. (SQLite's connections run so already; setting it there
                # would undo the BEGIN IMMEDIATE discipline when the connection is reset.)
                connection.execution_options(isolation_level="AUTOCOMMIT")
            self._local.connection = connection
        try:
            yield connection
            connection.rollback()  # ends SQLAlchemy's record of a transaction; a no-op below
        except DBAPIError:
            self._local.connection = None
            connection.close()
            raise
        except BaseException:
            connection.rollback()
            raise


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> None:
    """Raise when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def create_schema(engine: Engine, metadata: MetaData) -> None:
    """Create the tables of `metadata` (tests; production runs alembic)."""
    metadata.create_all(engine)


class UnitOfWork:
    """One database transaction; it rolls back unless `commit()` is called.

    Services subclass it to attach their repositories in `_open(session)`. Events written
    with `publish` land in the outbox in the same transaction as the state they describe.
    """

    session: Session

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def __enter__(self) -> Self:
        self.session = self._sessions()
        self._open(self.session)
        return self

    def _open(self, session: Session) -> None:
        """Attach repositories; overridden by services."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    def publish(self, *events: Event) -> None:
        append_to_outbox(self.session, *events)
