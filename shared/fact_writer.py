"""Group commit of facts: the concurrent requests of a process share one outbox transaction.

A read changes nothing but the outbox, yet each read used to pay for a write transaction of
its own (on SQLite, the database's one write lock). Here a request queues its outbox rows and
waits; whoever finds no commit under way becomes the leader, takes every row queued so far and
commits them in one transaction, then wakes the requests of that batch. A request returns only
once its own rows are committed, so "an answered read has its fact" holds as before: a crash
before the commit answers nobody of that batch; after it, every fact is in the outbox.

No thread of its own: the leader is always a waiting request, which also makes the writer safe
to create before gunicorn forks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from shared.events import Event
from shared.outbox import OUTBOX, insert_rows, outbox_row


@dataclass
class _Ticket:
    rows: Sequence[dict[str, Any]]
    done: bool = False
    error: Exception | None = None


class FactWriter:
    """Writes events to an outbox, committing those of concurrent callers together."""

    def __init__(self, engine: Engine, *, table_name: str = OUTBOX, max_batch: int = 512) -> None:
        self._engine = engine
        self._table_name = table_name
        self._max_batch = max_batch
        self._queue: list[_Ticket] = []
        self._committing = False
        # Used by one leader at a time; kept open, since opening one cost more than a commit.
        self._connection: Connection | None = None
        self._changed = threading.Condition()

    def write(self, *events: Event) -> None:
        """Commit `events` to the outbox; return once they are committed (or raise)."""
        # Rows are built here, in the caller's thread: they carry its trace context.
        ticket = _Ticket([outbox_row(e) for e in events])
        with self._changed:
            self._queue.append(ticket)
        while True:
            with self._changed:
                while self._committing and not ticket.done:
                    self._changed.wait()
                if ticket.done:
                    break
                self._committing = True
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            self._commit(batch)
        if ticket.error is not None:
            raise ticket.error

    def _commit(self, batch: list[_Ticket]) -> None:
        error: Exception | None = None
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            with self._connection.begin():
                rows = [row for t in batch for row in t.rows]
                insert_rows(self._connection, rows, self._table_name)
        except Exception as err:  # every request of the batch must hear of it
            error = err
            if isinstance(err, DBAPIError) and self._connection is not None:
                self._connection.close()  # perhaps broken: the next leader opens another
                self._connection = None
        finally:
            with self._changed:
                for ticket in batch:
                    ticket.done, ticket.error = True, error
                self._committing = False
                self._changed.notify_all()
