"""Reads by one reader, for one purpose, of one patient within a window fold into one notice."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from services.notify.config import NotifyConfig
from services.notify.domain import (
    READ_WINDOW,
    Notice,
    ReadFold,
    fold_key,
    fold_reads,
    notice_for,
    opened_by,
)
from shared.config import Settings
from tests.unit.notify import facts

P = "p-1"
NINE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def read(at: datetime = NINE, **fields) -> Notice:
    event = replace(facts.access(P, **fields), time=at)
    notice = notice_for(event)
    assert notice is not None
    return notice


def test_reads_by_one_reader_for_one_purpose_of_one_patient_share_a_fold_key():
    assert fold_key(read()) == fold_key(read(NINE + timedelta(hours=3), record_ids=("r-9",)))


@pytest.mark.parametrize(
    "other",
    [
        {"actor": "practitioner:dr-kim"},
        {"org": "org-b"},
        {"purpose": "HPAYMT"},
        {"action": "search"},
        {"action": "export"},
    ],
    ids=["another reader", "another org", "another purpose", "a search", "an export"],
)
def test_another_reader_org_purpose_or_action_folds_apart(other):
    assert fold_key(read(**other)) != fold_key(read())


def test_reads_of_another_patient_fold_apart():
    theirs = notice_for(replace(facts.access("p-2"), time=NINE))
    assert theirs is not None and fold_key(theirs) != fold_key(read())


@pytest.mark.parametrize(
    "event",
    [
        facts.access(P, break_glass_reason="OVRER", consent_ids=()),
        facts.access(P, outcome="deny", record_ids=(), consent_ids=()),
        facts.record_created(P),
        facts.consent_granted(P),
    ],
    ids=["break-glass", "refusal", "record added", "consent granted"],
)
def test_break_glass_refusals_and_everything_but_reads_stand_alone(event):
    notice = notice_for(event)
    assert notice is not None and fold_key(notice) is None


@pytest.mark.parametrize(
    ("minutes", "taken"),
    [(0, True), (14.9, True), (15, False), (40, False), (-3, True), (-15, False)],
    ids=["same time", "within", "at the end", "long after", "a late read", "a window before"],
)
def test_a_fold_takes_reads_until_one_window_after_the_read_that_opened_it(minutes, taken):
    fold = opened_by("n-1", read(), READ_WINDOW)
    assert fold.takes(read(NINE + timedelta(minutes=minutes))) is taken


def test_a_window_of_zero_folds_nothing():
    assert not opened_by("n-1", read(), timedelta(0)).takes(read())


def test_one_read_says_what_it_always_said():
    notice = read(record_ids=("r-1", "r-2"), consent_ids=("c-7",))
    assert notice.body == (
        "practitioner dr-lee of org-a read 2 records (Observation) for treatment under consent c-7."
    )
    assert notice.details["requests"] == 1


def test_a_fold_counts_requests_and_distinct_records_and_says_when():
    fold = opened_by("n-1", read(record_ids=("r-1", "r-2")), READ_WINDOW)
    fold = fold.with_read(read(NINE + timedelta(minutes=4), record_ids=("r-2",)))
    fold = fold.with_read(
        read(
            NINE + timedelta(minutes=9),
            record_ids=("r-3",),
            categories=("Condition",),
            consent_ids=("c-2",),
        )
    )
    assert fold.body == (
        "practitioner dr-lee of org-a read 3 records (Condition, Observation) for treatment "
        "under consent c-1, c-2 (3 requests between 09:00 and 09:09 UTC)."
    )
    assert fold.details["record_ids"] == ["r-1", "r-2", "r-3"]
    assert fold.details["requests"] == 3
    assert fold.details["last_read_at"] == "2026-12-01T09:09:00+00:00"


def test_reads_within_one_minute_say_at_that_minute():
    fold = opened_by("n-1", read(), READ_WINDOW).with_read(read(NINE + timedelta(seconds=30)))
    assert fold.body.endswith("(2 requests at 09:00 UTC).")


def test_a_late_read_moves_the_first_read_back_but_not_the_window():
    fold = opened_by("n-1", read(), READ_WINDOW).with_read(read(NINE - timedelta(minutes=2)))
    assert fold.details["first_read_at"] == "2026-12-01T08:58:00+00:00"
    assert (fold.starts_at, fold.ends_at) == (NINE, NINE + READ_WINDOW)
    assert "between 08:58 and 09:00 UTC" in fold.body


def test_a_fold_says_nothing_clinical():
    fold = opened_by("n-1", read(), READ_WINDOW).with_read(read(NINE + timedelta(minutes=1)))
    assert set(fold.details) == {
        "actor",
        "role",
        "org",
        "action",
        "record_ids",
        "categories",
        "purpose",
        "consent_ids",
        "requests",
        "first_read_at",
        "last_read_at",
    }


def test_the_read_window_is_fifteen_minutes_unless_configured():
    assert NotifyConfig.from_settings(Settings("notify", "sqlite://")).read_window == READ_WINDOW
    configured = Settings("notify", "sqlite://", extra={"read_window_seconds": "60"})
    assert NotifyConfig.from_settings(configured).read_window == timedelta(minutes=1)
    off = Settings("notify", "sqlite://", extra={"read_window_seconds": "0"})
    assert NotifyConfig.from_settings(off).read_window == timedelta(0)


def test_a_negative_read_window_is_refused_at_start():
    negative = Settings("notify", "sqlite://", extra={"read_window_seconds": "-1"})
    with pytest.raises(ValueError, match="READ_WINDOW_SECONDS"):
        NotifyConfig.from_settings(negative)


def ids():
    return (f"n-{n}" for n in count(1)).__next__


def keyed(*reads: Notice) -> list[tuple[str, Notice]]:
    return [(str(fold_key(r)), r) for r in reads]


def test_a_run_of_reads_folds_by_key_and_window_in_order():
    kim = {"actor": "practitioner:dr-kim", "org": "org-b"}
    reads = keyed(
        read(NINE),
        read(NINE + timedelta(minutes=1), **kim),
        read(NINE + timedelta(minutes=5)),
        read(NINE + timedelta(minutes=20)),  # one window after the first: a new fold
    )
    latest: dict[str, ReadFold | None] = {key: None for key, _ in reads}

    plan = fold_reads(latest, reads, READ_WINDOW, ids())

    assert list(plan.opened) == ["n-1", "n-2", "n-3"]
    assert [n_id for _, n_id in plan.counted] == ["n-1", "n-2", "n-1", "n-3"]
    assert [plan.folds[n].details["requests"] for n in ("n-1", "n-2", "n-3")] == [2, 1, 1]
    assert latest[reads[0][0]] == plan.folds["n-3"]


def test_a_run_of_reads_grows_the_latest_fold_it_was_given():
    [(key, later)] = keyed(read(NINE + timedelta(minutes=3)))
    latest: dict[str, ReadFold | None] = {key: opened_by("n-0", read(), READ_WINDOW)}

    plan = fold_reads(latest, [(key, later)], READ_WINDOW, ids())

    assert plan.opened == {} and plan.counted == [(later, "n-0")]
    assert plan.folds["n-0"].details["requests"] == 2 and latest[key] == plan.folds["n-0"]


def test_a_read_a_window_before_the_latest_fold_opens_its_own_and_leaves_the_latest():
    reads = keyed(read(NINE - timedelta(minutes=40)), read(NINE + timedelta(minutes=1)))
    key = reads[0][0]
    latest: dict[str, ReadFold | None] = {key: opened_by("n-0", read(), READ_WINDOW)}

    plan = fold_reads(latest, reads, READ_WINDOW, ids())

    assert list(plan.opened) == ["n-1"]
    assert [n_id for _, n_id in plan.counted] == ["n-1", "n-0"]
    fold = latest[key]
    assert fold is not None and fold.notification_id == "n-0"
