"""A request that reads, then records a fact of the reading, lets writers through meanwhile."""

from __future__ import annotations

import threading

from sqlalchemy import func, insert, select

from shared.db import Reading, UnitOfWork
from shared.fact_writer import FactWriter
from tests.integration.shared.tiny_service import applied, metadata, numbered_event, setup


def count(sessions, table) -> int:
    with UnitOfWork(sessions) as uow:
        return uow.session.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_writer_is_not_held_up_by_a_reading_request_whose_fact_then_commits(database_url):
    engine, sessions = setup(database_url)
    facts = FactWriter(engine)
    with Reading(engine)() as reader:
        assert reader.execute(select(func.count()).select_from(applied)).scalar_one() == 0

        writer_done = threading.Event()

        def write() -> None:
            with UnitOfWork(sessions) as uow:
                uow.session.execute(insert(applied).values(event_id="e", patient="p", version=1))
                uow.commit()
            writer_done.set()

        writer = threading.Thread(target=write)
        writer.start()
        # With the reader holding SQLite's write lock, the writer would wait 30 s (busy_timeout).
        assert writer_done.wait(timeout=10), "the writer waited for the reading request"
        writer.join()

        facts.write(numbered_event("p", 1))

    assert count(sessions, applied) == 1
    assert count(sessions, metadata.tables["outbox"]) == 1
    engine.dispose()
