"""Preventive-care reminders: which rules of the rule table apply to a patient, and whether each
is done, due or overdue, from what the chart holds.

Pure: no I/O. The rule table is data (`reminder_rules.yaml`, read by the caller); a reminder
says only "done" / "due" / "overdue", its due date, the records it rests on and the rule's
public source, never advice. What leaves records (`reminder.due`) names the rule id, the due
date and the rule set's version, nothing of what the rule is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import Event, new_event

SERVICE = "records"
DONE, DUE, OVERDUE, SNOOZED = "done", "due", "overdue", "snoozed"
MAX_SNOOZE = timedelta(days=366)
BIRTH_SEX_URL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
_BIRTH_SEX = {"F": "female", "M": "male"}

# Where each kind of entry says what it is, when it happened, and which statuses count.
_CODE_ELEMENT = {
    "Immunization": "vaccineCode",
    "Procedure": "code",
    "Observation": "code",
    "DiagnosticReport": "code",
}
_DATE_ELEMENTS = {
    "Immunization": ("occurrenceDateTime",),
    "Procedure": ("performedDateTime", "performedPeriod.end", "performedPeriod.start"),
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod.start", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
}
_COUNTED_STATUSES = {
    "Immunization": {"completed"},
    "Procedure": {"completed"},
    "Observation": {"final", "amended", "corrected"},
    "DiagnosticReport": {"final", "amended", "corrected", "appended"},
}
# The categories a rule set reads: the Patient for age and sex, and the entries above.
CATEGORIES = ("Patient", *_CODE_ELEMENT)


class InvalidRuleSet(ValueError):
    """A rule table that does not say what this module needs."""


# --- the rule table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    title: str
    url: str


@dataclass(frozen=True)
class Satisfier:
    """Entries with one of `codes` satisfy a rule for `every_years`, or for good once there are
    `doses` of them (the next dose due `dose_interval_days` after the last)."""

    codes: frozenset[str]  # "system|code"
    every_years: int | None = None
    doses: int = 1
    dose_interval_days: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    kind: str  # "immunization" | "screening"
    min_age: int
    max_age: int | None
    sex: str | None  # "female" | "male" | None (everyone)
    source: Source
    satisfied_by: tuple[Satisfier, ...]

    def applies_to(self, person: Person, today: date) -> bool:
        age = person.age_on(today)
        in_range = self.min_age <= age and (self.max_age is None or age <= self.max_age)
        return in_range and (self.sex is None or self.sex == person.sex)


@dataclass(frozen=True)
class RuleSet:
    version: str
    overdue_after: timedelta
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise NotFound(f"no reminder rule {rule_id}")

    @property
    def codes(self) -> frozenset[str]:
        """Every code some rule looks for: an entry with none of them changes no reminder."""
        return frozenset(c for r in self.rules for s in r.satisfied_by for c in s.codes)


def rule_set_from(data: Mapping[str, Any]) -> RuleSet:
    """The rule set a parsed rule table describes, or `InvalidRuleSet`."""
    try:
        rules = tuple(_rule(item) for item in data["rules"])
        rule_set = RuleSet(str(data["version"]), timedelta(days=data["overdue_after_days"]), rules)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidRuleSet(f"the reminder rule table is invalid: {err!r}") from None
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise InvalidRuleSet("the reminder rule table repeats a rule id")
    return rule_set


def _rule(item: Mapping[str, Any]) -> Rule:
    satisfied_by = tuple(
        Satisfier(
            frozenset(f"{s['system']}|{code}" for code in s["codes"]),
            s.get("every_years"),
            int(s.get("doses", 1)),
            int(s.get("dose_interval_days", 0)),
        )
        for s in item["satisfied_by"]
    )
    if not satisfied_by or item.get("sex") not in (None, "female", "male"):
        raise ValueError(f"rule {item['id']}: needs satisfied_by, and sex female, male or none")
    return Rule(
        id=str(item["id"]),
        title=str(item["title"]),
        kind=str(item["kind"]),
        min_age=int(item["min_age"]),
        max_age=item.get("max_age"),
        sex=item.get("sex"),
        source=Source(str(item["source"]["title"]), str(item["source"]["url"])),
        satisfied_by=satisfied_by,
    )


# --- the chart as the rules read it -------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One current record of the chart: its id and its FHIR resource."""

    record_id: str
    resource: Mapping[str, Any]

    @property
    def category(self) -> str:
        return str(self.resource.get("resourceType", ""))


@dataclass(frozen=True)
class Person:
    birth_date: date
    sex: str | None

    def age_on(self, day: date) -> int:
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - before_birthday

    def reaches(self, age: int) -> date:
        return _add_years(self.birth_date, age)


def person_of(entries: Iterable[Entry]) -> Person | None:
    """Birth date and sex at birth from the newest Patient entry (None without a birth date)."""
    patient = next((e.resource for e in entries if e.category == "Patient"), None)
    born = _day(patient.get("birthDate")) if patient else None
    if patient is None or born is None:
        return None
    return Person(born, _birth_sex(patient))


def _birth_sex(patient: Mapping[str, Any]) -> str | None:
    for extension in patient.get("extension", []):
        if extension.get("url") == BIRTH_SEX_URL:
            return _BIRTH_SEX.get(str(extension.get("valueCode")))
    gender = patient.get("gender")
    return gender if gender in ("female", "male") else None


@dataclass(frozen=True)
class Done:
    """An entry that counts towards a rule: which record, and the day it happened."""

    record_id: str
    on: date
    codes: frozenset[str]


def counted(entries: Iterable[Entry]) -> list[Done]:
    """The entries rules can count (completed, dated, coded), newest first."""
    found = []
    for entry in entries:
        category, resource = entry.category, entry.resource
        if category not in _CODE_ELEMENT:
            continue
        if resource.get("status") not in _COUNTED_STATUSES[category]:
            continue
        on = next(filter(None, (_day(_at(resource, p)) for p in _DATE_ELEMENTS[category])), None)
        codes = frozenset(token_forms(resource.get(_CODE_ELEMENT[category])))
        if on is not None and codes:
            found.append(Done(entry.record_id, on, codes))
    return sorted(found, key=lambda d: d.on, reverse=True)


def concerns(rule_set: RuleSet, resource: Mapping[str, Any]) -> bool:
    """Whether an entry can change a reminder: a Patient (age, sex) or an entry with a code
    some rule looks for."""
    category = resource.get("resourceType")
    if category == "Patient":
        return True
    element = _CODE_ELEMENT.get(str(category))
    return element is not None and not rule_set.codes.isdisjoint(token_forms(resource.get(element)))


def token_forms(concept: Any) -> Iterator[str]:
    """A CodeableConcept's codings as `system|code`."""
    codings = concept.get("coding", []) if isinstance(concept, Mapping) else []
    for coding in codings:
        if isinstance(coding, Mapping) and coding.get("system") and coding.get("code"):
            yield f"{coding['system']}|{coding['code']}"


def _at(resource: Mapping[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _day(value: Any) -> date | None:
    """The day of a FHIR date or dateTime (a partial date counts from its first day)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    parts = value[:10].split("-")
    try:
        return date(int(parts[0]), *(int(p) for p in parts[1:3]), *([1] * (3 - len(parts))))
    except ValueError:
        return None


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28)


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reminder:
    """One rule as it stands for one patient on one day."""

    rule: Rule
    status: str
    due_date: date
    evidence: tuple[str, ...]
    snoozed_until: date | None = None

    @property
    def is_due(self) -> bool:
        return self.status in (DUE, OVERDUE)


def evaluate(rule_set: RuleSet, entries: Sequence[Entry], today: date) -> list[Reminder]:
    """The reminders of every rule that applies to the patient today, in the table's order.

    `entries` are the chart's current records, newest first. Without a birth date no rule
    can tell whether it applies: no reminders.
    """
    person = person_of(entries)
    if person is None:
        return []
    done = counted(entries)
    return [
        _reminder(rule_set, rule, person, done, today)
        for rule in rule_set.rules
        if rule.applies_to(person, today)
    ]


def _reminder(
    rule_set: RuleSet, rule: Rule, person: Person, done: Sequence[Done], today: date
) -> Reminder:
    eligible = person.reaches(rule.min_age)
    due_dates, evidence, complete = [eligible], [], False
    for satisfier in rule.satisfied_by:
        matching = [d for d in done if d.codes & satisfier.codes]
        evidence.extend(matching)
        if not matching:
            continue
        if satisfier.every_years is not None:
            due_dates.append(_add_years(matching[0].on, satisfier.every_years))
        elif len(matching) >= satisfier.doses:
            complete = True
        else:
            due_dates.append(matching[0].on + timedelta(days=satisfier.dose_interval_days))
    due_date = eligible if complete else max(due_dates)
    if complete or due_date > today:
        status = DONE
    elif today - due_date > rule_set.overdue_after:
        status = OVERDUE
    else:
        status = DUE
    newest_first = sorted(evidence, key=lambda d: d.on, reverse=True)
    ids = tuple(dict.fromkeys(d.record_id for d in newest_first))
    return Reminder(rule, status, due_date, ids)


# --- the patient's choices ----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """What the patient chose for one reminder: snoozed until a day, or dismissed for the due
    date it had (it comes back when it falls due again)."""

    snoozed_until: date | None = None
    dismissed_due: date | None = None


def as_seen(
    reminders: Iterable[Reminder], choices: Mapping[str, Choice], today: date
) -> list[Reminder]:
    """The reminders with the patient's choices applied: dismissed ones left out, snoozed ones
    that would be due shown as snoozed."""
    seen = []
    for reminder in reminders:
        choice = choices.get(reminder.rule.id, Choice())
        if choice.dismissed_due == reminder.due_date:
            continue
        snoozed = (
            choice.snoozed_until if choice.snoozed_until and choice.snoozed_until > today else None
        )
        if snoozed and reminder.is_due:
            reminder = replace(reminder, status=SNOOZED, snoozed_until=snoozed)
        seen.append(reminder)
    return seen


def snooze_until(until: date, today: date) -> date:
    """The day a snooze may last to: after today, within a year."""
    if not today < until <= today + MAX_SNOOZE:
        raise InvalidInput("until must be a day after today and within a year")
    return until


def snoozable(reminder: Reminder) -> Reminder:
    """A reminder that may be snoozed: one that is due or overdue."""
    if not reminder.is_due:
        raise Conflict(f"reminder {reminder.rule.id} is {reminder.status}, not due")
    return reminder


def find(reminders: Iterable[Reminder], rule_id: str) -> Reminder:
    for reminder in reminders:
        if reminder.rule.id == rule_id:
            return reminder
    raise NotFound(f"no reminder {rule_id} for this patient")


def to_announce(
    reminders: Iterable[Reminder],
    announced: Mapping[str, date | None],
    choices: Mapping[str, Choice],
    today: date,
) -> list[Reminder]:
    """The reminders that fell due and that the patient was not yet told of, for this due
    date: not dismissed, not snoozed."""
    seen = {r.rule.id: r for r in as_seen(reminders, choices, today)}
    return [r for r in seen.values() if r.is_due and announced.get(r.rule.id) != r.due_date]


def reminder_due(patient: str, reminder: Reminder, rule_set_version: str) -> Event:
    """`reminder.due`: the rule id, due date and rule set version, nothing clinical."""
    return new_event(
        "reminder.due",
        source_service=SERVICE,
        subject=patient,
        actor="system",
        data={
            "patient": patient,
            "rule_id": reminder.rule.id,
            "due_date": reminder.due_date,
            "rule_set_version": rule_set_version,
        },
    )
