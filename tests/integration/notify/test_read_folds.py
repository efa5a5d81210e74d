"""Reads by one reader, for one purpose, within a window: one notification that counts them.

Event times are set in the past: folding follows the events' own times, never the wall clock.
"""

from __future__ import annotations

import email
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default

import pytest
from sqlalchemy import func, select

from services.notify.jobs import send_digests
from services.notify.store import folded_reads
from tests.conftest import bearer
from tests.unit.notify import facts

NINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def patient() -> str:
    return f"p-{uuid.uuid4()}"


@pytest.fixture
def own(token, patient) -> str:
    return str(token("patient", patient, patient=patient))


def read(patient, minutes: float = 0.0, **fields):
    """A read of the patient's records by dr-lee of org-a, `minutes` after nine."""
    return replace(facts.access(patient, **fields), time=NINE + timedelta(minutes=minutes))


def plain_text(envelope) -> str:
    message = email.message_from_bytes(envelope.content, policy=default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_37_reads_within_the_window_are_one_notification_that_counts_them(notify, patient, own):
    for n in range(37):
        assert notify.handle(read(patient, n * 0.25, record_ids=(f"r-{n % 12}",)))

    [notification] = notify.inbox(patient, own)
    assert notification["body"] == (
        "practitioner dr-lee of org-a read 12 records (Observation) for treatment "
        "under consent c-1 (37 requests between 09:00 and 09:09 UTC)."
    )
    assert notification["details"]["requests"] == 37
    assert notification["details"]["last_read_at"] == "2026-03-02T09:09:00+00:00"
    assert notification["occurred_at"] == "2026-03-02T09:00:00+00:00"


def test_a_read_one_window_after_the_first_opens_a_new_notification(notify, patient, own):
    for minutes in (0, 10, 16, 20):
        notify.handle(read(patient, minutes))

    newest, first = notify.inbox(patient, own)
    assert (first["details"]["requests"], newest["details"]["requests"]) == (2, 2)
    assert first["body"].endswith("(2 requests between 09:00 and 09:10 UTC).")
    assert newest["body"].endswith("(2 requests between 09:16 and 09:20 UTC).")


def test_other_readers_and_other_purposes_are_told_apart(notify, patient, own):
    notify.handle(read(patient, 0))
    notify.handle(read(patient, 1, actor="practitioner:dr-kim", org="org-b"))
    notify.handle(read(patient, 2, purpose="HPAYMT"))
    notify.handle(read(patient, 3))

    payment, kim, lee = notify.inbox(patient, own)
    assert kim["body"].startswith("practitioner dr-kim of org-b read 1 record")
    assert payment["body"].endswith("for payment under consent c-1.")
    assert [n["details"]["requests"] for n in (payment, kim, lee)] == [1, 1, 2]


def test_break_glass_reads_and_refusals_are_never_folded(notify, patient, own):
    for minutes in range(3):
        notify.handle(read(patient, minutes, break_glass_reason="OVRER", consent_ids=()))
        notify.handle(read(patient, minutes, outcome="deny", record_ids=(), consent_ids=()))

    kinds = sorted(n["kind"] for n in notify.inbox(patient, own))
    assert kinds == ["access-denied"] * 3 + ["break-glass"] * 3


def test_a_poll_of_reads_refusals_and_break_glass_in_one_transaction(notify, patient, own):
    kim = {"actor": "practitioner:dr-kim", "org": "org-b"}
    assert (
        notify.handle_batch(
            [
                read(patient, 0),
                read(patient, 1, **kim),
                read(patient, 2, outcome="deny", record_ids=(), consent_ids=()),
                read(patient, 3),
                read(patient, 4, break_glass_reason="OVRER", consent_ids=()),
                read(patient, 5, **kim),
                read(patient, 6, record_ids=("r-2",)),
            ]
        )
        == 7
    )

    counts = {
        (n["kind"], n["details"]["actor"]): n["details"].get("requests")
        for n in notify.inbox(patient, own)
    }
    assert counts == {
        ("record-accessed", "practitioner:dr-lee"): 3,
        ("record-accessed", "practitioner:dr-kim"): 2,
        ("access-denied", "practitioner:dr-lee"): None,
        ("break-glass", "practitioner:dr-lee"): None,
    }


def test_a_read_folded_in_makes_the_notification_unread_again(notify, patient, own):
    notify.handle(read(patient, 0))
    [notification] = notify.inbox(patient, own)
    url = f"/patients/{patient}/notifications/{notification['id']}/read"
    assert notify.client.post(url, headers=bearer(own)).status_code == 200
    assert notify.inbox(patient, own, unread="true") == []

    notify.handle(read(patient, 5))

    [unread] = notify.inbox(patient, own, unread="true")
    assert unread["id"] == notification["id"] and unread["read_at"] is None
    assert unread["details"]["requests"] == 2


def test_a_read_delivered_again_or_replayed_in_another_group_counts_once(notify, patient, own):
    first, second = read(patient, 0), read(patient, 1)
    assert notify.handle(first) and notify.handle(second)
    assert notify.handle(second) is False  # the inbox knows it
    assert notify.handle_batch([first, second], consumer="notify-replay") == 2

    [notification] = notify.inbox(patient, own)
    assert notification["details"]["requests"] == 2


def test_a_replay_into_a_fresh_database_folds_the_same_reads_together(
    make_notify, another_database_url, patient, own
):
    events = [read(patient, minutes) for minutes in (0, 5, 14, 16, 29, 31, 50)]
    live = make_notify()
    for event in events:
        live.handle(event)  # a transaction each, as the events trickle in
    replayed = make_notify(database=another_database_url)
    assert replayed.handle_batch(events) == len(events)  # one transaction, as a replay polls

    def folds(notify):
        return [(n["body"], n["details"]) for n in notify.inbox(patient, own)]

    assert folds(replayed) == folds(live)
    assert [details["requests"] for _, details in folds(live)] == [1, 1, 2, 3]


def test_webhook_and_email_hear_of_a_fold_once_when_it_opens(
    make_notify, smtp, receiver, patient, own
):
    notify = make_notify(smtp_url=smtp.url)
    hook = receiver()
    headers = bearer(own)
    notify.client.post(f"/patients/{patient}/webhooks", json={"url": hook.url}, headers=headers)
    notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={
            "email": "pat@example.org",
            "kinds": {"record-accessed": {"channels": ["email", "webhook"]}},
        },
        headers=headers,
    )
    for minutes in range(5):
        notify.handle(read(patient, minutes))
    notify.deliver_all()
    assert (len(hook.calls), len(smtp.mailbox.envelopes)) == (1, 1)
    [notification] = notify.inbox(patient, own)
    assert notification["details"]["requests"] == 5

    notify.handle(read(patient, 20))  # a new window: heard of again
    notify.deliver_all()
    assert (len(hook.calls), len(smtp.mailbox.envelopes)) == (2, 2)


def test_the_digest_tells_of_a_fold_with_its_count_and_again_after_more_reads(
    make_notify, smtp, patient, own
):
    notify = make_notify(smtp_url=smtp.url)
    notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={
            "email": "pat@example.org",
            "kinds": {"record-accessed": {"channels": ["email"], "delivery": "daily_digest"}},
        },
        headers=bearer(own),
    )
    for minutes in range(3):
        notify.handle(read(patient, minutes))
    assert len(send_digests(notify.sessions, now=datetime.now(UTC))) == 1
    notify.handle(read(patient, 4))
    assert len(send_digests(notify.sessions, now=datetime.now(UTC))) == 1
    notify.deliver_all()

    texts = [plain_text(envelope) for envelope in smtp.mailbox.envelopes]
    assert len(texts) == 2
    assert "(3 requests between 09:00 and 09:02 UTC)" in texts[0]
    assert "(4 requests between 09:00 and 09:04 UTC)" in texts[1]


def test_a_read_window_of_zero_folds_nothing(make_notify, patient, own):
    notify = make_notify(read_window_seconds="0")
    for minutes in range(3):
        notify.handle(read(patient, minutes))
    assert len(notify.inbox(patient, own)) == 3


def test_an_erased_patient_keeps_no_folded_reads_and_hears_of_no_late_read(notify, patient, own):
    notify.handle_batch([read(patient, 0), read(patient, 1), facts.patient_erased(patient)])
    notify.handle_batch([read(patient, 2)])  # late news, within the erased fold's window

    assert notify.inbox(patient, own) == []
    with notify.engine.connect() as conn:
        query = select(func.count()).where(folded_reads.c.patient == patient)
        assert conn.execute(query).scalar_one() == 0
