"""Notify's tables, its repositories and its unit of work.

A delivery is a persisted job per (notification or digest, channel, target). Workers claim due
jobs with a lease (`claimed_until`) and a claim token: a worker that dies mid-send leaves the
job to come due again when the lease ends, and a late answer from a worker whose lease ran out
changes nothing. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite's `BEGIN IMMEDIATE`
already lets one writer at a time in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeDecorator
from uuid6 import uuid7

from services.notify.domain import (
    READ_WINDOW,
    RECORD_ACCESSED,
    WEBHOOK,
    ConsentWindow,
    KindPreference,
    Message,
    Notice,
    Notification,
    Preferences,
    ReadFold,
    digest_message,
    fold_key,
    fold_reads,
    message_for,
    route,
    targets,
)
from shared.db import UnitOfWork, is_postgres
from shared.errors import NotFound
from shared.inbox import add_inbox_table
from shared.outbox import add_outbox_table
from shared.paging import decode_cursor, encode_cursor
from shared.relay_lease import add_relay_lease_table


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite keeps no offset and answers naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


metadata = MetaData()
outbox = add_outbox_table(metadata)
inbox = add_inbox_table(metadata)
add_relay_lease_table(metadata)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("details", JSON, nullable=False),
    # The event (or check) that caused it: at most one notification per fact.
    Column("source_event_id", String(200), nullable=False, unique=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime, nullable=True),
    # Reads that fold into this notification until `folds_until` share its `fold_key`
    # (domain.fold_key); both are null for a notification that stands alone.
    Column("fold_key", String(64), nullable=True),
    Column("folds_until", UtcDateTime, nullable=True),
    Index("ix_notifications_patient_id", "patient", "id"),
    Index("ix_notifications_fold", "fold_key", "occurred_at"),
)

# Every read counted in a notification: a read delivered again, even to another consumer group,
# is not counted twice.
folded_reads = Table(
    "folded_reads",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("notification_id", String(36), nullable=False),
    Column("patient", String(200), nullable=False, index=True),
)

preferences = Table(
    "preferences",
    metadata,
    Column("patient", String(200), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("kinds", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient", String(200), nullable=False, index=True),
    Column("url", Text, nullable=False),
    # Kept as is: every delivery is signed with it (HMAC needs the secret itself).
    Column("secret", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(36), primary_key=True),  # the webhook-id, stable across retries
    Column("patient", String(200), nullable=False, index=True),
    Column("notification_id", String(36), nullable=False),  # or the digest's id
    Column("kind", String(40), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("target", String(36), nullable=False),  # webhook id, or "email"
    Column("message", JSON, nullable=False),
    Column("state", String(20), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("claim", String(36), nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    UniqueConstraint("notification_id", "channel", "target", name="uq_deliveries_target"),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
)

digest_entries = Table(
    "digest_entries",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("channel", String(20), primary_key=True),
    Column("patient", String(200), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(100), primary_key=True),
    Column("patient", String(200), nullable=False, index=True),
    Column("grantee_type", String(20), nullable=False),
    Column("grantee_id", String(200), nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("expiry_warned", Boolean, nullable=False),
)

daily_runs = Table(
    "daily_runs",
    metadata,
    Column("job", String(60), primary_key=True),
    Column("last_day", String(10), nullable=False),
)

# Patients whose data was erased: late events about them create nothing.
erasures = Table(
    "erasures",
    metadata,
    Column("patient", String(200), primary_key=True),
    Column("erased_at", UtcDateTime, nullable=False),
)


# Statements of the consumers' path, built once: building one costs more than running it.
_NOTIFICATION_OF = select(notifications.c.id).where(
    notifications.c.source_event_id == bindparam("source_event_id")
)
_ADD_NOTIFICATION = insert(notifications)
_later = notifications.alias("later")
# Each key's folds that start last (one, unless several started at the same moment), by index.
_LATEST_FOLDS = select(
    notifications.c.id,
    notifications.c.fold_key,
    notifications.c.occurred_at,
    notifications.c.folds_until,
    notifications.c.details,
).where(
    notifications.c.fold_key.in_(bindparam("fold_keys", expanding=True)),
    notifications.c.occurred_at
    == select(func.max(_later.c.occurred_at))
    .where(_later.c.fold_key == notifications.c.fold_key)
    .scalar_subquery(),
)
_COUNTED_READS = select(folded_reads.c.event_id).where(
    folded_reads.c.event_id.in_(bindparam("event_ids", expanding=True))
)
_COUNT_READS = insert(folded_reads)
_UPDATE_FOLD = update(notifications).where(notifications.c.id == bindparam("notification_id"))
_WEBHOOKS_OF = (
    select(webhooks).where(webhooks.c.patient == bindparam("patient")).order_by(webhooks.c.id)
)
_IS_ERASED = select(erasures.c.patient).where(erasures.c.patient == bindparam("patient"))
_PATIENTS: BindParameter[str] = bindparam("patients", expanding=True)
_PREFERENCES_OF_ALL = select(preferences).where(preferences.c.patient.in_(_PATIENTS))
_WEBHOOKS_OF_ALL = (
    select(webhooks.c.id, webhooks.c.patient)
    .where(webhooks.c.patient.in_(_PATIENTS))
    .order_by(webhooks.c.id)
)
_ERASED_AMONG = select(erasures.c.patient).where(erasures.c.patient.in_(_PATIENTS))
_ADD_DELIVERY = insert(deliveries)
# SQLite and PostgreSQL both skip a duplicate row this way; SQLAlchemy's dialect constructs for
# it have no cache key, and would be compiled again on every call.
_INTO_DIGEST = text(
    "INSERT INTO digest_entries (notification_id, channel, patient, created_at)"
    " VALUES (:notification_id, :channel, :patient, :created_at) ON CONFLICT DO NOTHING"
).bindparams(bindparam("created_at", type_=UtcDateTime))


def _run(session: Session, statement: Executable, params: Any) -> CursorResult[Any]:
    """Run a Core statement on the session's connection, without the ORM's work per call."""
    return session.connection().execute(statement, params)


def _notification(row: Row[Any]) -> Notification:
    return Notification(
        id=row.id,
        kind=row.kind,
        patient=row.patient,
        title=row.title,
        body=row.body,
        urgent=row.urgent,
        details=row.details,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        read_at=row.read_at,
    )


def _new_notification(notification_id: str, notice: Notice, *, now: datetime) -> Notification:
    return Notification(
        id=notification_id,
        kind=notice.kind,
        patient=notice.patient,
        title=notice.title,
        body=notice.body,
        urgent=notice.urgent,
        details=dict(notice.details),
        occurred_at=notice.occurred_at,
        created_at=now,
    )


def _notification_row(notification: Notification, source_event_id: str) -> dict[str, Any]:
    row = {**notification.__dict__, "source_event_id": source_event_id}
    return {**row, "fold_key": None, "folds_until": None}


def _message_json(message: Message) -> dict[str, Any]:
    return {"subject": message.subject, "text": message.text, "payload": dict(message.payload)}


@dataclass(frozen=True)
class DeliveryState:
    channel: str
    state: str
    attempts: int


@dataclass(frozen=True)
class Page:
    items: list[Notification]
    next_cursor: str | None
    deliveries: dict[str, list[DeliveryState]]


class Notifications:
    def __init__(self, session: Session) -> None:
        self.session = session

    def exists_for(self, source_event_id: str) -> bool:
        found = _run(self.session, _NOTIFICATION_OF, {"source_event_id": source_event_id})
        return found.first() is not None

    def add(self, notice: Notice, *, now: datetime) -> Notification:
        notification = _new_notification(str(uuid7()), notice, now=now)
        row = _notification_row(notification, notice.source_event_id)
        _run(self.session, _ADD_NOTIFICATION, row)
        return notification

    def add_folds(
        self, opened: Sequence[tuple[str, ReadFold, Notice]], *, now: datetime
    ) -> list[Notification]:
        """Store the notifications of folds that reads opened, each (key, fold as it stands,
        first read); answer them as of their first read, which is what a push tells."""
        firsts: list[Notification] = []
        rows: list[dict[str, Any]] = []
        for key, fold, read in opened:
            firsts.append(_new_notification(fold.notification_id, read, now=now))
            row = _notification_row(firsts[-1], read.source_event_id)
            rows.append({**row, "body": fold.body, "details": dict(fold.details)})
            rows[-1].update(fold_key=key, folds_until=fold.ends_at)
        if rows:
            _run(self.session, _ADD_NOTIFICATION, rows)
        return firsts

    def get(self, *, patient: str, notification_id: str) -> Notification:
        row = self.session.execute(
            select(notifications).where(
                notifications.c.id == notification_id, notifications.c.patient == patient
            )
        ).first()
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return _notification(row)

    def of_ids(self, ids: Sequence[str]) -> list[Notification]:
        rows = self.session.execute(select(notifications).where(notifications.c.id.in_(ids)))
        return [_notification(row) for row in rows]

    def page(self, *, patient: str, unread_only: bool, limit: int, cursor: str | None) -> Page:
        """Newest first: ids are UUIDv7, so they sort by creation time."""
        query = select(notifications).where(notifications.c.patient == patient)
        if unread_only:
            query = query.where(notifications.c.read_at.is_(None))
        if cursor:
            query = query.where(notifications.c.id < decode_cursor(cursor, str))
        rows = self.session.execute(
            query.order_by(notifications.c.id.desc()).limit(limit + 1)
        ).all()
        items = [_notification(row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
        return Page(items, next_cursor, self.delivery_states([n.id for n in items]))

    def delivery_states(self, ids: Sequence[str]) -> dict[str, list[DeliveryState]]:
        states: dict[str, list[DeliveryState]] = {i: [] for i in ids}
        rows = self.session.execute(
            select(
                deliveries.c.notification_id,
                deliveries.c.channel,
                deliveries.c.state,
                deliveries.c.attempts,
            )
            .where(deliveries.c.notification_id.in_(ids))
            .order_by(deliveries.c.channel, deliveries.c.id)
        )
        for row in rows:
            states[row.notification_id].append(DeliveryState(row.channel, row.state, row.attempts))
        return states

    def mark_read(self, *, patient: str, notification_id: str, now: datetime) -> Notification:
        notification = self.get(patient=patient, notification_id=notification_id)
        if notification.read_at is None:
            self.session.execute(
                update(notifications)
                .where(notifications.c.id == notification_id)
                .values(read_at=now)
            )
            return self.get(patient=patient, notification_id=notification_id)
        return notification


def _preferences(row: Row[Any]) -> Preferences:
    return Preferences(
        email=row.email,
        kinds={
            kind: KindPreference(frozenset(choice["channels"]), choice["delivery"])
            for kind, choice in row.kinds.items()
        },
    )


class PreferencesRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, patient: str) -> Preferences:
        return self.of_patients([patient])[patient]

    def of_patients(self, patients: Sequence[str]) -> dict[str, Preferences]:
        """Each patient's preferences (the defaults for one who chose none)."""
        chosen = {p: Preferences() for p in patients}
        for row in _run(self.session, _PREFERENCES_OF_ALL, {"patients": list(patients)}):
            chosen[row.patient] = _preferences(row)
        return chosen

    def put(self, patient: str, chosen: Preferences, *, now: datetime) -> None:
        kinds = {
            kind: {"channels": sorted(choice.channels), "delivery": choice.delivery}
            for kind, choice in chosen.kinds.items()
        }
        values = {"email": chosen.email, "kinds": kinds, "updated_at": now}
        updated = self.session.execute(
            update(preferences).where(preferences.c.patient == patient).values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(insert(preferences).values(patient=patient, **values))


@dataclass(frozen=True)
class Webhook:
    id: str
    patient: str
    url: str
    secret: str
    created_at: datetime


class Webhooks:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, *, patient: str, url: str, secret: str, now: datetime) -> Webhook:
        webhook = Webhook(str(uuid7()), patient, url, secret, now)
        self.session.execute(
            insert(webhooks).values(
                id=webhook.id, patient=patient, url=url, secret=secret, created_at=now
            )
        )
        return webhook

    def of_patient(self, patient: str) -> list[Webhook]:
        rows = _run(self.session, _WEBHOOKS_OF, {"patient": patient})
        return [Webhook(r.id, r.patient, r.url, r.secret, r.created_at) for r in rows]

    def ids_of_patients(self, patients: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {p: [] for p in patients}
        for row in _run(self.session, _WEBHOOKS_OF_ALL, {"patients": list(patients)}):
            found[row.patient].append(row.id)
        return found

    def find(self, webhook_id: str) -> Webhook | None:
        row = self.session.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
        return Webhook(row.id, row.patient, row.url, row.secret, row.created_at) if row else None

    def remove(self, *, patient: str, webhook_id: str) -> None:
        removed = self.session.execute(
            delete(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.patient == patient)
        )
        if not removed.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"webhook {webhook_id} not found")


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker holds until `claimed_until`, with what sending it needs."""

    id: str
    claim: str
    patient: str
    notification_id: str
    kind: str
    channel: str
    target: str
    message: Message
    attempts: int


class Deliveries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        *,
        patient: str,
        notification_id: str,
        kind: str,
        channel: str,
        target: str,
        message: Message,
        now: datetime,
    ) -> str:
        delivery_id = str(uuid7())
        row = {
            "id": delivery_id,
            "patient": patient,
            "notification_id": notification_id,
            "kind": kind,
            "channel": channel,
            "target": target,
            "message": _message_json(message),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "claimed_until": None,
            "claim": None,
            "last_error": None,
            "created_at": now,
            "finished_at": None,
        }
        _run(self.session, _ADD_DELIVERY, row)
        return delivery_id

    def claim_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[ClaimedDelivery]:
        """Take up to `limit` due deliveries, counting the attempt now: a delivery whose
        worker keeps crashing still reaches the cap."""
        query = (
            select(deliveries)
            .where(
                deliveries.c.state == "pending",
                deliveries.c.next_attempt_at <= now,
                (deliveries.c.claimed_until.is_(None)) | (deliveries.c.claimed_until <= now),
            )
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if is_postgres(self.session.get_bind()):  # type: ignore[arg-type]
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for row in self.session.execute(query).all():
            claim = str(uuid7())
            self.session.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(claim=claim, claimed_until=now + lease, attempts=row.attempts + 1)
            )
            claimed.append(
                ClaimedDelivery(
                    id=row.id,
                    claim=claim,
                    patient=row.patient,
                    notification_id=row.notification_id,
                    kind=row.kind,
                    channel=row.channel,
                    target=row.target,
                    message=Message(**row.message),
                    attempts=row.attempts + 1,
                )
            )
        return claimed

    def finish(self, job: ClaimedDelivery, *, state: str, error: str | None, now: datetime) -> bool:
        """Record a final outcome; False when the claim was lost (the lease ran out)."""
        return self._update_claimed(
            job,
            state=state,
            last_error=error,
            finished_at=now,
            claim=None,
            claimed_until=None,
        )

    def retry_later(self, job: ClaimedDelivery, *, error: str, at: datetime) -> bool:
        return self._update_claimed(
            job, next_attempt_at=at, last_error=error, claim=None, claimed_until=None
        )

    def _update_claimed(self, job: ClaimedDelivery, **values: Any) -> bool:
        result = self.session.execute(
            update(deliveries)
            .where(deliveries.c.id == job.id, deliveries.c.claim == job.claim)
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class Consents:
    """Notify's projection of consents: enough to warn before one ends."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, consent_id: str) -> ConsentWindow | None:
        row = self.session.execute(
            select(consents).where(consents.c.consent_id == consent_id)
        ).first()
        if row is None:
            return None
        return ConsentWindow(
            row.consent_id, row.patient, row.grantee_type, row.grantee_id, row.ends_at, row.status
        )

    def granted(self, window: ConsentWindow) -> None:
        values = {
            "patient": window.patient,
            "grantee_type": window.grantee_type,
            "grantee_id": window.grantee_id,
            "ends_at": window.ends_at,
            "status": "active",
        }
        updated = self.session.execute(
            update(consents).where(consents.c.consent_id == window.consent_id).values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(
                insert(consents).values(consent_id=window.consent_id, expiry_warned=False, **values)
            )

    def ended(self, consent_id: str, status: str) -> None:
        self.session.execute(
            update(consents).where(consents.c.consent_id == consent_id).values(status=status)
        )

    def ending_before(self, moment: datetime) -> list[ConsentWindow]:
        rows = self.session.execute(
            select(consents).where(
                consents.c.status == "active",
                consents.c.expiry_warned.is_(False),
                consents.c.ends_at <= moment,
            )
        )
        return [
            ConsentWindow(r.consent_id, r.patient, r.grantee_type, r.grantee_id, r.ends_at)
            for r in rows
        ]

    def warned(self, consent_id: str) -> None:
        self.session.execute(
            update(consents).where(consents.c.consent_id == consent_id).values(expiry_warned=True)
        )


class ReadFolds:
    """Notifications that count reads (domain.ReadFold), found by their fold key."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def latest_of(self, keys: Sequence[str]) -> dict[str, ReadFold | None]:
        """Each key's fold that starts last (the latest created of those starting together),
        or None."""
        latest: dict[str, ReadFold | None] = dict.fromkeys(keys)
        rows = _run(self.session, _LATEST_FOLDS, {"fold_keys": list(keys)}).all()
        for row in sorted(rows, key=lambda row: row.id):
            latest[row.fold_key] = ReadFold(row.id, row.occurred_at, row.folds_until, row.details)
        return latest

    def counted(self, reads: Sequence[Notice]) -> set[str]:
        """The ids of the reads' events that some notification counts already."""
        event_ids = [read.source_event_id for read in reads]
        return set(_run(self.session, _COUNTED_READS, {"event_ids": event_ids}).scalars())

    def count(self, counted: Sequence[tuple[Notice, str]]) -> None:
        """Record that each read counts in the notification named beside it."""
        rows = [
            {"event_id": read.source_event_id, "notification_id": n_id, "patient": read.patient}
            for read, n_id in counted
        ]
        if rows:
            _run(self.session, _COUNT_READS, rows)

    def update(self, folds: Sequence[ReadFold]) -> None:
        """Each fold's notification says what it counts now, and is unread again: the
        patient has not seen the reads it gained."""
        rows = [
            {
                "notification_id": fold.notification_id,
                "body": fold.body,
                "details": dict(fold.details),
                "read_at": None,
            }
            for fold in folds
        ]
        if rows:
            _run(self.session, _UPDATE_FOLD, rows)


@dataclass(frozen=True)
class Recipient:
    """What routing a patient's notifications needs."""

    erased: bool
    preferences: Preferences
    webhook_ids: list[str]


@dataclass
class _TransactionMemo:
    """What one transaction has read or written of folds and recipients.

    A poll's batch of events is handled in one transaction and mostly concerns a few readers
    and patients: each is looked up once per batch, not once per event. Only the transaction
    that fills it uses it, and erasing a patient drops it.
    """

    transaction: object
    folds: dict[str, ReadFold | None] = field(default_factory=dict)
    recipients: dict[str, Recipient] = field(default_factory=dict)


_MEMO = "notify.transaction_memo"


def _memo(session: Session) -> _TransactionMemo:
    session.connection()  # begin the transaction, so that the memo is that transaction's
    transaction = session.get_transaction()
    memo = session.info.get(_MEMO)
    if memo is None or memo.transaction is not transaction:
        memo = session.info[_MEMO] = _TransactionMemo(transaction)
    return memo


class Repositories:
    """Every repository over one session, and what spans several of them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.notifications = Notifications(session)
        self.preferences = PreferencesRepository(session)
        self.webhooks = Webhooks(session)
        self.deliveries = Deliveries(session)
        self.consents = Consents(session)
        self.folds = ReadFolds(session)

    def notify(self, notice: Notice, *, now: datetime) -> Notification | None:
        """Store a notice that stands alone and queue its deliveries, unless it exists or the
        patient was erased. None when nothing was created."""
        if self.notifications.exists_for(notice.source_event_id):
            return None
        recipient = self.recipients([notice.patient])[notice.patient]
        if recipient.erased:
            return None
        notification = self.notifications.add(notice, now=now)
        self._route(notification, recipient, now=now)
        return notification

    def notify_all(
        self, notices: Sequence[Notice], *, now: datetime, read_window: timedelta = READ_WINDOW
    ) -> None:
        """`notify` of each notice, but reads: a read is counted in the fold of its key that
        takes it, or opens one (domain.fold_reads)."""
        reads: list[tuple[str, Notice]] = []
        for notice in notices:
            key = fold_key(notice)
            if key is None:
                self.notify(notice, now=now)
            else:
                reads.append((key, notice))
        if reads:
            self._count_reads(reads, now=now, window=read_window)

    def _count_reads(
        self, reads: Sequence[tuple[str, Notice]], *, now: datetime, window: timedelta
    ) -> None:
        """Fold reads set-wise: one query for those counted already, one for their keys' folds
        not known yet in this transaction, three for their patients, then one write per table.

        Webhooks and email hear of a fold once, when it opens: later reads update the inbox
        item (its count, its latest read, unread again) and put it back in the next digest.
        """
        counted = self.folds.counted([read for _, read in reads])
        recipients = self.recipients(sorted({read.patient for _, read in reads}))
        reads = [
            (key, read)
            for key, read in reads
            if read.source_event_id not in counted and not recipients[read.patient].erased
        ]
        memo = _memo(self.session)
        unknown = sorted({key for key, _ in reads} - memo.folds.keys())
        if unknown:
            memo.folds.update(self.folds.latest_of(unknown))
        plan = fold_reads(memo.folds, reads, window, new_id=lambda: str(uuid7()))
        self.folds.count(plan.counted)
        opened = [(key, plan.folds[n_id], read) for n_id, (key, read) in plan.opened.items()]
        for first in self.notifications.add_folds(opened, now=now):
            self._route(first, recipients[first.patient], now=now)
        grown = [fold for n_id, fold in plan.folds.items() if n_id not in plan.opened]
        self.folds.update(grown)
        patient_of = {n_id: read.patient for read, n_id in plan.counted}
        for fold in grown:
            patient = patient_of[fold.notification_id]
            self._back_in_digest(fold.notification_id, patient, recipients[patient], now=now)

    def recipients(self, patients: Sequence[str]) -> dict[str, Recipient]:
        """What routing each patient's notifications needs, read once per transaction."""
        memo = _memo(self.session)
        unknown = [p for p in patients if p not in memo.recipients]
        if unknown:
            chosen = self.preferences.of_patients(unknown)
            webhook_ids = self.webhooks.ids_of_patients(unknown)
            erased = set(_run(self.session, _ERASED_AMONG, {"patients": unknown}).scalars())
            for patient in unknown:
                recipient = Recipient(patient in erased, chosen[patient], webhook_ids[patient])
                memo.recipients[patient] = recipient
        return {patient: memo.recipients[patient] for patient in patients}

    def _route(self, notification: Notification, recipient: Recipient, *, now: datetime) -> None:
        plan = route(notification.kind, recipient.preferences, recipient.webhook_ids)
        message = message_for(notification)
        for channel, target in plan.now:
            self.deliveries.add(
                patient=notification.patient,
                notification_id=notification.id,
                kind=notification.kind,
                channel=channel,
                target=target,
                message=message,
                now=now,
            )
        self._into_digest(notification.id, notification.patient, plan.digest, now=now)

    def _back_in_digest(
        self, notification_id: str, patient: str, recipient: Recipient, *, now: datetime
    ) -> None:
        """A folded read puts its notification in the next digest again, if it left it."""
        plan = route(RECORD_ACCESSED, recipient.preferences, recipient.webhook_ids)
        self._into_digest(notification_id, patient, plan.digest, now=now)

    def _into_digest(
        self, notification_id: str, patient: str, channels: Sequence[str], *, now: datetime
    ) -> None:
        """Put the notification in the patient's next digest on `channels`, once."""
        entries = [
            {
                "notification_id": notification_id,
                "channel": channel,
                "patient": patient,
                "created_at": now,
            }
            for channel in channels
        ]
        if entries:
            _run(self.session, _INTO_DIGEST, entries)

    def compose_digests(self, *, now: datetime) -> list[str]:
        """One delivery per patient, channel and target for every waiting digest entry;
        answer the new deliveries' ids."""
        rows = self.session.execute(
            select(digest_entries).where(digest_entries.c.created_at <= now)
        ).all()
        waiting: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            waiting.setdefault((row.patient, row.channel), []).append(row.notification_id)
        created: list[str] = []
        for (patient, channel), ids in sorted(waiting.items()):
            chosen = self.preferences.get(patient)
            webhook_ids = [w.id for w in self.webhooks.of_patient(patient)]
            digest_id = str(uuid7())
            message = digest_message(patient, digest_id, self.notifications.of_ids(ids), now)
            for channel_, target in targets([channel], chosen, webhook_ids):
                created.append(
                    self.deliveries.add(
                        patient=patient,
                        notification_id=digest_id,
                        kind="daily-digest",
                        channel=channel_,
                        target=target,
                        message=message,
                        now=now,
                    )
                )
            self.session.execute(
                delete(digest_entries).where(
                    digest_entries.c.patient == patient,
                    digest_entries.c.channel == channel,
                    digest_entries.c.notification_id.in_(ids),
                )
            )
        return created

    def first_run_today(self, job: str, *, now: datetime) -> bool:
        """Record that `job` runs today; False when it already did (in any worker)."""
        today = now.strftime("%Y-%m-%d")
        updated = self.session.execute(
            update(daily_runs)
            .where(daily_runs.c.job == job, daily_runs.c.last_day < today)
            .values(last_day=today)
        )
        if updated.rowcount:  # type: ignore[attr-defined]
            return True
        exists = self.session.execute(
            select(daily_runs.c.job).where(daily_runs.c.job == job)
        ).first()
        if exists is not None:
            return False
        try:
            with self.session.begin_nested():
                self.session.execute(insert(daily_runs).values(job=job, last_day=today))
        except IntegrityError:
            return False  # another worker recorded it first
        return True

    def destination_of(self, job: ClaimedDelivery) -> dict[str, str] | None:
        """Where a delivery goes now: its webhook's URL and secret, or the patient's email
        address; None when that is gone."""
        if job.channel == WEBHOOK:
            webhook = self.webhooks.find(job.target)
            return {"url": webhook.url, "secret": webhook.secret} if webhook else None
        email = self.preferences.get(job.patient).email
        return {"email": email} if email else None

    def is_erased(self, patient: str) -> bool:
        return _run(self.session, _IS_ERASED, {"patient": patient}).first() is not None

    def erase(self, patient: str, *, now: datetime) -> None:
        """Forget everything of the patient's; keep only that they were erased."""
        self.session.info.pop(_MEMO, None)
        kept = (notifications, folded_reads, deliveries, digest_entries, preferences, webhooks)
        for tbl in (*kept, consents):
            self.session.execute(delete(tbl).where(tbl.c.patient == patient))
        if not self.is_erased(patient):
            self.session.execute(insert(erasures).values(patient=patient, erased_at=now))


class NotifyUnitOfWork(UnitOfWork, Repositories):
    """One transaction over notify's repositories; rolls back unless committed."""

    def _open(self, session: Session) -> None:
        Repositories.__init__(self, session)
