"""Where consents live: the event table (the source of truth, which doubles as the outbox the
relay publishes from), the read model of current consents, the repository over both, and the
unit of work that writes them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.consent.domain import (
    Consent,
    ConsentEvent,
    ConsentExpired,
    ConsentGranted,
    ConsentRevoked,
    Grantee,
    Period,
    apply,
    fold,
)
from shared.db import UnitOfWork
from shared.events import Event, from_kafka, new_event
from shared.inbox import add_inbox_table
from shared.outbox import add_outbox_table, outbox_row, wake_relay
from shared.relay_lease import add_relay_lease_table

SERVICE = "consent"
EVENTS_TABLE = "consent_events"

metadata = MetaData()

consent_events = add_outbox_table(
    metadata,
    EVENTS_TABLE,
    Column("consent_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
)
# Optimistic concurrency: of two writers of the same version of a consent, the second fails.
consent_events.append_constraint(
    UniqueConstraint("consent_id", "version", name="uq_consent_events_consent_id_version")
)

consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(36), primary_key=True),
    Column("patient", String(64), nullable=False),
    Column("grantee_type", String(20), nullable=False),
    Column("grantee_id", String(64), nullable=False),
    Column("actions", JSON, nullable=False),
    Column("categories", JSON, nullable=False),
    Column("security_labels", JSON, nullable=False),
    Column("purposes", JSON, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("status", String(10), nullable=False),
    Column("version", Integer, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_consents_patient_status", "patient", "status"),
    Index("ix_consents_status_period_end", "status", "period_end"),
)

add_inbox_table(metadata)
add_relay_lease_table(metadata)


# --- consent events as facts (CloudEvents) and back ------------------------------------


def to_fact(event: ConsentEvent) -> Event:
    """The CloudEvent of a consent event."""
    data: dict[str, Any] = {
        "consent_id": event.consent_id,
        "patient": event.patient,
        "version": event.version,
    }
    if isinstance(event, ConsentGranted):
        short_type = "consent.granted"
        data |= {
            "grantee": {"type": event.grantee.type, "id": event.grantee.id},
            "actions": list(event.actions),
            "categories": list(event.categories),
            "security_labels": list(event.security_labels),
            "purposes": list(event.purposes),
            "period": {
                "start": event.period.start.isoformat(),
                "end": event.period.end.isoformat(),
            },
        }
    else:
        short_type = "consent.revoked" if isinstance(event, ConsentRevoked) else "consent.expired"
    return new_event(
        short_type,
        source_service=SERVICE,
        subject=event.patient,
        actor=event.by,
        data=data,
        time=event.at,
    )


def from_fact(fact: Event) -> ConsentEvent:
    """The consent event a CloudEvent records."""
    data = fact.data
    ids = (data["consent_id"], data["patient"], data["version"])
    if fact.short_type == "consent.granted":
        return ConsentGranted(
            *ids,
            grantee=Grantee(data["grantee"]["type"], data["grantee"]["id"]),
            actions=tuple(data["actions"]),
            categories=tuple(data["categories"]),
            security_labels=tuple(data["security_labels"]),
            purposes=tuple(data["purposes"]),
            period=Period(
                datetime.fromisoformat(data["period"]["start"]),
                datetime.fromisoformat(data["period"]["end"]),
            ),
            at=fact.time,
            by=fact.actor,
        )
    if fact.short_type == "consent.revoked":
        return ConsentRevoked(*ids, at=fact.time, by=fact.actor)
    if fact.short_type == "consent.expired":
        return ConsentExpired(*ids, at=fact.time, by=fact.actor)
    raise ValueError(f"{fact.type} is not a consent event")


def _fact_of(row: Any) -> Event:
    headers = [(name, value.encode()) for name, value in row.headers]
    return from_kafka(headers, row.key.encode(), row.value)


# --- the read model ---------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    # SQLite gives back what it stored (UTC) without its offset.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_model_values(consent: Consent) -> dict[str, Any]:
    return {
        "consent_id": consent.id,
        "patient": consent.patient,
        "grantee_type": consent.grantee.type,
        "grantee_id": consent.grantee.id,
        "actions": list(consent.actions),
        "categories": list(consent.categories),
        "security_labels": list(consent.security_labels),
        "purposes": list(consent.purposes),
        "period_start": _utc(consent.period.start),
        "period_end": _utc(consent.period.end),
        "status": consent.status,
        "version": consent.version,
        "granted_at": _utc(consent.granted_at),
        "updated_at": _utc(consent.updated_at),
    }


def _consent_of(row: Any) -> Consent:
    return Consent(
        id=row.consent_id,
        patient=row.patient,
        grantee=Grantee(row.grantee_type, row.grantee_id),
        actions=tuple(row.actions),
        categories=tuple(row.categories),
        security_labels=tuple(row.security_labels),
        purposes=tuple(row.purposes),
        period=Period(_utc(row.period_start), _utc(row.period_end)),
        status=row.status,
        version=row.version,
        granted_at=_utc(row.granted_at),
        updated_at=_utc(row.updated_at),
    )


class ConsentRepository:
    """Consents as their events (for changing them) and as the read model (for reading)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # the event table

    def get(self, consent_id: str) -> Consent | None:
        """The consent as the fold of its events; None when it was never granted."""
        return fold(from_fact(fact) for fact in self.history(consent_id))

    def history(self, consent_id: str) -> list[Event]:
        """The facts of one consent, oldest first."""
        rows = self.session.execute(
            select(consent_events.c.headers, consent_events.c.key, consent_events.c.value)
            .where(consent_events.c.consent_id == consent_id)
            .order_by(consent_events.c.version)
        )
        return [_fact_of(row) for row in rows]

    def record(self, consent: Consent, events: Sequence[ConsentEvent]) -> None:
        """Append `events` and bring the read model to `consent`, the state they lead to.

        Raises IntegrityError (now or at commit) when another writer took one of the versions.
        """
        self.session.execute(
            consent_events.insert(),
            [
                outbox_row(to_fact(event))
                | {"consent_id": event.consent_id, "version": event.version}
                for event in events
            ],
        )
        wake_relay(self.session, EVENTS_TABLE)
        values = _read_model_values(consent)
        if isinstance(events[0], ConsentGranted):
            self.session.execute(consents.insert().values(values))
        else:
            self.session.execute(
                update(consents).where(consents.c.consent_id == consent.id).values(values)
            )

    # the read model

    def current(self, consent_id: str) -> Consent | None:
        row = self.session.execute(
            select(consents).where(consents.c.consent_id == consent_id)
        ).first()
        return _consent_of(row) if row else None

    def of_patient(
        self,
        patient: str,
        *,
        status: str | None = None,
        grantees: Sequence[Grantee] | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[Consent]:
        """A patient's consents, newest first (consent ids are UUIDv7: they sort by time)."""
        query = select(consents).where(consents.c.patient == patient)
        if status:
            query = query.where(consents.c.status == status)
        if grantees is not None:
            query = query.where(
                or_(
                    *(
                        (consents.c.grantee_type == g.type) & (consents.c.grantee_id == g.id)
                        for g in grantees
                    )
                )
            )
        if before:
            query = query.where(consents.c.consent_id < before)
        rows = self.session.execute(query.order_by(consents.c.consent_id.desc()).limit(limit))
        return [_consent_of(row) for row in rows]

    def due_for_expiry(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of active consents whose period has ended by `now`."""
        return list(
            self.session.scalars(
                select(consents.c.consent_id)
                .where(consents.c.status == "active", consents.c.period_end <= _utc(now))
                .order_by(consents.c.period_end)
                .limit(limit)
            )
        )

    def rebuild(self) -> int:
        """Replace the read model by the fold of the event table; answer the consents count."""
        self.session.execute(delete(consents))
        rows = self.session.execute(
            select(
                consent_events.c.consent_id,
                consent_events.c.headers,
                consent_events.c.key,
                consent_events.c.value,
            ).order_by(consent_events.c.consent_id, consent_events.c.version)
        ).all()
        count = 0
        for _, group in groupby(rows, key=lambda row: row.consent_id):
            consent: Consent | None = None
            for row in group:
                consent = apply(consent, from_fact(_fact_of(row)))
            if consent is not None:
                self.session.execute(consents.insert().values(_read_model_values(consent)))
                count += 1
        return count


class ConsentUnitOfWork(UnitOfWork):
    consents: ConsentRepository

    def _open(self, session: Session) -> None:
        self.consents = ConsentRepository(session)
