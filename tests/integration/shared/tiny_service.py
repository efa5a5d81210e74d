"""A service of the smallest kind, to exercise the outbox and the consumer loop for real."""

from __future__ import annotations

import uuid

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import Session

from shared.db import UnitOfWork, create_schema, make_engine, session_factory
from shared.events import Event, new_event
from shared.inbox import Origin, add_inbox_table
from shared.outbox import add_outbox_table
from shared.relay_lease import add_relay_lease_table

metadata = MetaData()
add_outbox_table(metadata)
add_inbox_table(metadata)
add_relay_lease_table(metadata)
applied = Table(
    "applied",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),  # not unique: duplicates must show
    Column("patient", String(64), nullable=False),
    Column("version", Integer, nullable=False),
)


def setup(url: str):
    engine = make_engine(url)
    create_schema(engine, metadata)
    return engine, session_factory(engine)


def numbered_event(patient: str, n: int) -> Event:
    """An event whose data carries a number, to check order and count."""
    return new_event(
        "record.entered-in-error",
        source_service="tiny",
        subject=patient,
        actor="system",
        data={
            "patient": patient,
            "record_id": str(uuid.uuid4()),
            "version": n,
            "category": "Observation",
            "author": "dr-test",
        },
    )


def write(sessions, *events: Event, commit: bool = True) -> None:
    with UnitOfWork(sessions) as uow:
        uow.publish(*events)
        if commit:
            uow.commit()


def apply(session: Session, event: Event, origin: Origin) -> None:
    session.execute(
        insert(applied).values(
            event_id=event.id, patient=event.data["patient"], version=event.data["version"]
        )
    )


HANDLERS = {"caretrail.record.entered-in-error.v1": apply}


def applied_versions(sessions, patient: str) -> list[int]:
    with sessions() as session:
        return list(
            session.execute(
                select(applied.c.version).where(applied.c.patient == patient).order_by(applied.c.n)
            ).scalars()
        )


def applied_count(sessions, event_id: str) -> int:
    with sessions() as session:
        return int(
            session.execute(
                select(func.count()).select_from(applied).where(applied.c.event_id == event_id)
            ).scalar_one()
        )
