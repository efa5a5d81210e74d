"""Concurrent requests' facts share one outbox transaction; each returns once its own is in."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, func, select

from shared.fact_writer import FactWriter
from tests.integration.shared.tiny_service import metadata, numbered_event, setup

outbox = metadata.tables["outbox"]


def outbox_rows(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def test_facts_written_while_a_commit_is_under_way_are_committed_together(database_url):
    engine, _ = setup(database_url)
    commits: list[int] = []
    first_insert_started = threading.Event()

    @event.listens_for(engine, "before_cursor_execute")
    def slow_first_insert(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.startswith("INSERT INTO outbox") and not first_insert_started.is_set():
            first_insert_started.set()
            time.sleep(0.3)  # the others queue up meanwhile

    @event.listens_for(engine, "commit")
    def count_commit(conn):  # noqa: ANN001
        commits.append(1)

    facts = FactWriter(engine)
    seen_on_return: dict[int, int] = {}

    def request(n: int) -> None:
        facts.write(numbered_event("p", n))
        seen_on_return[n] = outbox_rows(engine)

    first = threading.Thread(target=request, args=(0,))
    first.start()
    assert first_insert_started.wait(5)
    others = [threading.Thread(target=request, args=(n,)) for n in range(1, 9)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(10)

    assert outbox_rows(engine) == 9
    assert len(commits) == 2  # the first alone, the eight that waited in one transaction
    # Nobody returned before its own fact was committed.
    assert seen_on_return[0] >= 1
    assert all(seen_on_return[n] == 9 for n in range(1, 9))
    engine.dispose()


def test_a_failed_commit_fails_every_request_of_its_batch_and_writes_nothing(database_url):
    engine, _ = setup(database_url)
    facts = FactWriter(engine)
    failing = True

    @event.listens_for(engine, "before_cursor_execute")
    def refuse(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if failing and statement.startswith("INSERT INTO outbox"):
            raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError, match="the disk is full"):
        facts.write(numbered_event("p", 1), numbered_event("p", 2))
    assert outbox_rows(engine) == 0

    failing = False
    facts.write(numbered_event("p", 3))  # the writer is not left stuck
    assert outbox_rows(engine) == 1
    engine.dispose()
