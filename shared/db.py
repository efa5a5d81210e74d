"""Engines, sessions and the unit of work, for SQLite files (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and a transaction starts with `BEGIN IMMEDIATE`
unless it only reads: a deferred transaction that reads then writes fails with SQLITE_BUSY
instead of waiting for the lock, when another connection wrote in between.
See https://www.sqlite.org/lang_transaction.html#deferred_immediate_and_exclusive_transactions
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
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
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for work that only reads; it ends rolled back.

    On SQLite its transaction takes no write lock (a deferred BEGIN), so writers go on while a
    request reads; a request that then records a fact of its reading does so elsewhere
    (`shared.fact_writer`), as of a moment just after what it read.
    """
    with engine.connect() as connection:
        yield connection.execution_options(**{_READ_ONLY: True})


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
