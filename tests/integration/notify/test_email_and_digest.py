"""Email through a real SMTP server, and the daily digest."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default

import pytest

from services.notify.jobs import send_digests, send_digests_once_a_day
from tests.conftest import bearer
from tests.unit.notify import facts


@pytest.fixture
def patient() -> str:
    return f"p-{uuid.uuid4()}"


@pytest.fixture
def headers(token, patient):
    return bearer(token("patient", patient, patient=patient))


def received(envelope) -> EmailMessage:
    message = email.message_from_bytes(envelope.content, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def prefer(notify, patient, headers, kinds):
    response = notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={"email": "pat@example.org", "kinds": kinds},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()


def test_an_email_reaches_the_patient_with_the_notification_as_subject(
    make_notify, smtp, patient, headers
):
    notify = make_notify(smtp_url=smtp.url)
    prefer(notify, patient, headers, {"record-added": {"channels": ["email"]}})
    notify.handle(facts.record_created(patient, category="Immunization"))
    notify.deliver_all()

    [envelope] = smtp.mailbox.envelopes
    assert envelope.rcpt_tos == ["pat@example.org"]
    message = received(envelope)
    assert message["Subject"] == "A provider added to your records"
    assert message["To"] == "pat@example.org"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and "added a record to your chart (Immunization, " in text.get_content()
    assert html is not None and "<h1>A provider added to your records</h1>" in html.get_content()


def test_break_glass_is_emailed_at_once_even_when_the_patient_chose_nothing_for_it(
    make_notify, smtp, patient, headers
):
    notify = make_notify(smtp_url=smtp.url)
    prefer(notify, patient, headers, {})
    notify.handle(facts.access(patient, break_glass_reason="OVRER"))
    notify.deliver_all()
    [envelope] = smtp.mailbox.envelopes
    assert received(envelope)["Subject"] == "[Urgent] Emergency access to your records"


def test_an_unreachable_mail_server_ends_failed_after_the_cap(make_notify, patient, headers):
    notify = make_notify(smtp_url="smtp://127.0.0.1:9")  # discard port: nobody listens
    prefer(notify, patient, headers, {"record-added": {"channels": ["email"]}})
    notify.handle(facts.record_created(patient))
    notify.deliver_all()
    [notification] = notify.inbox(patient, headers["Authorization"].split()[1])
    assert notification["deliveries"] == [{"channel": "email", "state": "failed", "attempts": 4}]


def test_several_events_in_a_day_make_one_digest_message(make_notify, smtp, patient, headers):
    notify = make_notify(smtp_url=smtp.url)
    prefer(
        notify,
        patient,
        headers,
        {
            "record-accessed": {"channels": ["email"], "delivery": "daily_digest"},
            "access-denied": {"channels": ["email"], "delivery": "daily_digest"},
        },
    )
    for event in (
        facts.access(patient, actor="practitioner:dr-a"),
        facts.access(patient, actor="practitioner:dr-b"),
        facts.access(patient, actor="practitioner:dr-c", outcome="deny"),
    ):
        notify.handle(event)
    notify.deliver_all()
    assert smtp.mailbox.envelopes == []  # nothing before the digest

    now = datetime.now(UTC)
    assert len(send_digests(notify.sessions, now=now)) == 1
    assert send_digests(notify.sessions, now=now) == []  # each notification goes in one digest
    notify.deliver_all()

    [envelope] = smtp.mailbox.envelopes
    message = received(envelope)
    assert message["Subject"] == f"Your caretrail summary for {now:%Y-%m-%d}: 3 notifications"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert all(f"dr-{x}" in text for x in "abc")
    assert len(notify.inbox(patient, headers["Authorization"].split()[1])) == 3


def test_the_daily_digest_runs_once_a_day_from_its_hour(make_notify, smtp, patient, headers):
    notify = make_notify(smtp_url=smtp.url)
    prefer(
        notify,
        patient,
        headers,
        {"record-accessed": {"channels": ["email"], "delivery": "daily_digest"}},
    )
    notify.handle(facts.access(patient))
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)

    assert send_digests_once_a_day(notify.sessions, now=day + timedelta(hours=17), hour=18) == []
    assert (
        len(send_digests_once_a_day(notify.sessions, now=day + timedelta(hours=18), hour=18)) == 1
    )
    notify.handle(facts.access(patient))
    assert send_digests_once_a_day(notify.sessions, now=day + timedelta(hours=20), hour=18) == []
    next_day = day + timedelta(days=1, hours=18)
    assert len(send_digests_once_a_day(notify.sessions, now=next_day, hour=18)) == 1
