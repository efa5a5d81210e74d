"""Reminder use cases: the patient's reminders as they see them, snooze and dismiss; and the
records worker's watch that evaluates a chart again when it changes and once a day, and
announces a reminder that fell due with `reminder.due` through the outbox.

Why in the worker and not on the write: a write would have to open every relevant record of
the chart to evaluate the rules, and writes are the tuned path. The worker consumes records'
own `record.*` events, after the write committed; it evaluates a chart only when the entry
written can change a reminder (a Patient, or a code some rule looks for). Its answer and its
`reminder.due` events are one transaction with the event's inbox row, so a redelivery does
nothing twice. The daily sweep evaluates every chart not evaluated today, which is how
reminders fall due with the passing of time.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Row
from sqlalchemy.orm import Session

from services.records.chart import Chart, RecordView
from services.records.domain import Reader
from services.records.reminders import (
    CATEGORIES,
    Choice,
    Entry,
    Reminder,
    RuleSet,
    as_seen,
    concerns,
    evaluate,
    find,
    reminder_due,
    rule_set_from,
    snoozable,
    snooze_until,
    to_announce,
)
from services.records.sealing import CannotOpen, DataKey, KeyRing, Sealed, record_context
from services.records.store import Charts, ChartUnitOfWork, Records, ReminderStates, Search
from shared.auth import Principal
from shared.errors import PermissionDenied
from shared.events import Event, type_name
from shared.inbox import Handler, Origin
from shared.outbox import append

log = logging.getLogger(__name__)

RULES_FILE = Path(__file__).with_name("reminder_rules.yaml")
_BATCH = 500

Clock = Callable[[], datetime]


@functools.cache
def rule_table(path: Path = RULES_FILE) -> RuleSet:
    """The rule table in the repository, read once per process."""
    with path.open(encoding="utf-8") as table:
        return rule_set_from(yaml.safe_load(table))


def choices_of(rows: Sequence[Row[Any]]) -> dict[str, Choice]:
    return {row.rule_id: Choice(row.snoozed_until, row.dismissed_due) for row in rows}


class ReminderBook:
    """A patient's reminders, evaluated on the chart as the reader may see it, with the
    patient's snoozes and dismissals."""

    def __init__(
        self,
        chart: Chart,
        unit_of_work: Callable[[], ChartUnitOfWork],
        rule_set: RuleSet,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._chart = chart
        self._uow = unit_of_work
        self.rule_set = rule_set
        self._clock = clock

    def reminders(self, reader: Reader, patient: str) -> list[Reminder]:
        """The reminders the reader may see: one access fact names the records read."""
        today = self._clock().date()
        return as_seen(self._evaluated(reader, patient, today), self._choices(patient), today)

    def snooze(self, reader: Reader, patient: str, rule_id: str, until: date) -> Reminder:
        """Snooze one of the patient's due reminders until a day (the patient only)."""
        _require_patient(reader.principal, patient)
        today = self._clock().date()
        until = snooze_until(until, today)
        found = self._evaluated(reader, patient, today)
        snoozable(find(found, rule_id))
        with self._uow() as uow:
            uow.reminders.choose(
                patient=patient, rule_id=rule_id, at=self._clock(), snoozed_until=until
            )
            uow.commit()
        return find(as_seen(found, self._choices(patient), today), rule_id)

    def dismiss(self, reader: Reader, patient: str, rule_id: str) -> None:
        """Dismiss one of the patient's reminders for its present due date (the patient only)."""
        _require_patient(reader.principal, patient)
        reminder = find(self._evaluated(reader, patient, self._clock().date()), rule_id)
        with self._uow() as uow:
            uow.reminders.choose(
                patient=patient, rule_id=rule_id, at=self._clock(), dismissed_due=reminder.due_date
            )
            uow.commit()

    def _evaluated(self, reader: Reader, patient: str, today: date) -> list[Reminder]:
        """The reminders before the patient's choices, on the chart as the reader may see it."""

        def remind(views: list[RecordView]) -> tuple[list[Reminder], Sequence[str]]:
            entries = [Entry(v.id, v.resource) for v in views]
            return evaluate(self.rule_set, entries, today), [v.id for v in views]

        return self._chart.derive(reader, patient, CATEGORIES, remind)

    def _choices(self, patient: str) -> dict[str, Choice]:
        with self._uow() as uow:
            return choices_of(uow.reminders.of_patient(patient=patient))


def _require_patient(principal: Principal, patient: str) -> None:
    if not principal.is_patient(patient):
        raise PermissionDenied("only the patient may snooze or dismiss their reminders")


class ReminderWatch:
    """The worker's side: evaluate a chart's reminders again and announce the ones that fell
    due, once per due date."""

    def __init__(
        self, rule_set: RuleSet, keyring: KeyRing, clock: Clock = lambda: datetime.now(UTC)
    ) -> None:
        self.rule_set = rule_set
        self._keyring = keyring
        self._clock = clock

    def evaluate_chart(self, session: Session, patient: str) -> list[Event]:
        """Evaluate the chart in the caller's transaction; answer the `reminder.due` events
        written to the outbox."""
        states = ReminderStates(session)
        key = self._key(session, patient)
        if key is None:
            states.forget(patient=patient)
            return []
        now = self._clock()
        reminders = evaluate(self.rule_set, _entries(session, key, patient), now.date())
        rows = states.of_patient(patient=patient)
        announced = {row.rule_id: row.announced_due for row in rows}
        fresh = to_announce(reminders, announced, choices_of(rows), now.date())
        states.evaluated(
            patient=patient,
            states=[(r.rule.id, r.status, r.due_date) for r in reminders],
            rule_set_version=self.rule_set.version,
            on=now.date(),
            at=now,
        )
        told = [
            r
            for r in fresh
            if states.claim_announcement(patient=patient, rule_id=r.rule.id, due_date=r.due_date)
        ]
        events = [reminder_due(patient, r, self.rule_set.version) for r in told]
        append(session, *events)
        return events

    def sweep(self, sessions: Callable[[], Session], *, limit: int = 100) -> int:
        """Evaluate the charts not yet evaluated today, each in its own transaction; answer
        how many were."""
        today = self._clock().date()
        with sessions() as session:
            patients = ReminderStates(session).not_evaluated(
                on=today, rule_set_version=self.rule_set.version, limit=limit
            )
        evaluated = 0
        for patient in patients:
            try:
                with sessions() as session, session.begin():
                    self.evaluate_chart(session, patient)
                evaluated += 1
            except Exception as err:
                # One chart that fails (a key that no longer opens it) must not stop the
                # others; it is tried again at the next tick. The error's type says enough.
                log.warning("reminders of a chart not evaluated: %s", type(err).__name__)
        return evaluated

    def daily(
        self, sessions: Callable[[], Session], interval_seconds: float
    ) -> Callable[[threading.Event], None]:
        """The worker job: sweep every `interval_seconds` until stopped."""

        def run(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    while self.sweep(sessions) and not stop.is_set():
                        pass
                except Exception as err:
                    # The database may be away for a while: the next tick tries again.
                    log.warning("reminder sweep failed: %s", type(err).__name__)
                stop.wait(interval_seconds)

        return run

    def handlers(self) -> dict[str, Handler]:
        """Handlers of records' own chart events: evaluate again when reminders may change."""

        def on_record_changed(session: Session, event: Event, origin: Origin) -> None:
            if self._changes_reminders(session, event.data):
                self.evaluate_chart(session, event.data["patient"])

        def on_record_entered_in_error(session: Session, event: Event, origin: Origin) -> None:
            if event.data["category"] in CATEGORIES:
                self.evaluate_chart(session, event.data["patient"])

        return {
            type_name("record.created"): on_record_changed,
            type_name("record.amended"): on_record_changed,
            type_name("record.entered-in-error"): on_record_entered_in_error,
        }

    def _changes_reminders(self, session: Session, data: dict[str, Any]) -> bool:
        if data["category"] not in CATEGORIES:
            return False
        key = self._key(session, data["patient"])
        if key is None:
            return False
        context = record_context(data["patient"], data["record_id"], data["version"])
        try:
            content = key.open(Sealed.from_event_data(data["content"]), context)
        except CannotOpen:
            return False  # sealed under a key the chart no longer holds: nothing to evaluate
        return concerns(self.rule_set, json.loads(content))

    def _key(self, session: Session, patient: str) -> DataKey | None:
        chart = Charts(session).get(patient=patient)
        if chart is None or chart.key_id is None or chart.wrapped_key is None:
            return None
        return self._keyring.unwrap(patient, chart.key_id, chart.wrapped_key)


def _entries(session: Session, key: DataKey, patient: str) -> list[Entry]:
    """The chart's current records of the categories rules read, opened, newest first."""
    entries = []
    records = Records(session)
    for category in CATEGORIES:
        search = Search(patient, category)
        while True:
            batch = records.search(search, limit=_BATCH)
            for stored in batch:
                record = stored.record
                content = key.open(
                    stored.content, record_context(patient, record.id, record.version)
                )
                entries.append(Entry(record.id, json.loads(content)))
            if len(batch) < _BATCH:
                break
            search = Search(patient, category, before_seq=batch[-1].seq)
    return entries
