"""Webhooks: registration behind the SSRF guard, signed deliveries, retries, failure events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from services.notify.store import Deliveries, deliveries
from shared.events import TOPIC_NOTIFY
from tests.conftest import bearer
from tests.unit.notify import facts


@pytest.fixture
def patient() -> str:
    return f"p-{uuid.uuid4()}"


@pytest.fixture
def headers(token, patient):
    return bearer(token("patient", patient, patient=patient))


def register(notify, patient, headers, url, **body):
    return notify.client.post(
        f"/patients/{patient}/webhooks", json={"url": url, **body}, headers=headers
    )


def subscribe_reads(notify, patient, headers, url):
    created = register(notify, patient, headers, url)
    assert created.status_code == 201, created.get_json()
    notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={"kinds": {"record-accessed": {"channels": ["webhook"]}}},
        headers=headers,
    )
    return created.get_json()["secret"]


def test_registering_gives_the_secret_once(notify, patient, headers, receiver):
    created = register(notify, patient, headers, receiver().url)
    assert created.status_code == 201
    body = created.get_json()
    assert body["secret"].startswith("whsec_")
    listed = notify.client.get(f"/patients/{patient}/webhooks", headers=headers).get_json()
    assert listed["items"] == [
        {"id": body["id"], "url": body["url"], "created_at": body["created_at"]}
    ]


def test_a_given_secret_is_kept(notify, patient, headers, receiver):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert (
        register(notify, patient, headers, receiver().url, secret=secret).get_json()["secret"]
        == secret
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/",
        "https://10.0.0.8/hook",
        "https://192.168.1.20/hook",
        "https://[::1]/hook",
        "http://127.0.0.1:8080/hook",
        "https://localhost/hook",
    ],
)
def test_internal_targets_are_refused_when_loopback_is_not_allowed(
    make_notify, patient, headers, url
):
    notify = make_notify(allow_loopback_webhooks="false")
    response = register(notify, patient, headers, url)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert (
        notify.client.get(f"/patients/{patient}/webhooks", headers=headers).get_json()["items"]
        == []
    )


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "https://10.1.2.3/", "http://192.168.0.1/"]
)
def test_private_targets_are_refused_even_when_loopback_is_allowed(notify, patient, headers, url):
    assert register(notify, patient, headers, url).status_code == 422


def test_a_delivery_is_signed_per_the_standard_webhooks_spec(notify, patient, headers, receiver):
    hook = receiver()
    secret = subscribe_reads(notify, patient, headers, hook.url)
    notify.handle(facts.access(patient, record_ids=("r-1",)))
    notify.deliver_all()

    [call] = hook.calls
    payload = Webhook(secret).verify(call.body, call.headers)
    assert payload["type"] == "notification.created"
    assert payload["data"]["kind"] == "record-accessed" and payload["data"]["patient"] == patient
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Webhook("whsec_" + "A" * 32).verify(call.body, call.headers)


def test_a_receiver_failing_three_times_gets_it_once_under_the_same_webhook_id(
    notify, patient, headers, receiver, kafka_tap
):
    tap = kafka_tap(TOPIC_NOTIFY)
    hook = receiver(failures=3)
    secret = subscribe_reads(notify, patient, headers, hook.url)
    notify.handle(facts.access(patient))
    notify.deliver_all()

    assert [c.status for c in hook.calls] == [503, 503, 503, 204]
    assert len({c.headers["webhook-id"] for c in hook.calls}) == 1
    Webhook(secret).verify(hook.calls[-1].body, hook.calls[-1].headers)
    [notification] = notify.inbox(patient, headers["Authorization"].split()[1])
    assert notification["deliveries"] == [
        {"channel": "webhook", "state": "delivered", "attempts": 4}
    ]

    notify.publish_outbox()
    [event] = tap.events(1, where=lambda e: e.subject == patient)
    assert event.type == "caretrail.notification.delivered.v1"
    assert event.data["attempts"] == 4 and event.data["notification_id"] == notification["id"]


def test_a_receiver_that_always_fails_ends_failed_after_the_cap_with_a_failed_event(
    notify, patient, headers, receiver, kafka_tap
):
    tap = kafka_tap(TOPIC_NOTIFY)
    hook = receiver(failures=None)
    subscribe_reads(notify, patient, headers, hook.url)
    notify.handle(facts.access(patient))
    notify.deliver_all()

    assert len(hook.calls) == 4  # the cap of these tests
    with notify.engine.connect() as conn:
        row = conn.execute(select(deliveries)).one()
    assert row.state == "failed" and row.last_error == "the receiver answered HTTP 503"

    notify.publish_outbox()
    events = tap.events(1, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [e.type for e in events] == ["caretrail.notification.failed.v1"]
    assert events[0].data["error"] == "the receiver answered HTTP 503"
    assert events[0].data["kind"] == "record-accessed" and events[0].data["channel"] == "webhook"


def test_a_delivery_whose_worker_died_is_sent_again_after_the_lease_with_the_same_id(
    make_notify, patient, headers, receiver
):
    notify = make_notify(delivery_lease_seconds="0.2")
    hook = receiver()
    subscribe_reads(notify, patient, headers, hook.url)
    notify.handle(facts.access(patient))

    with notify.sessions() as session:  # a worker claims the delivery, then dies
        [lost] = Deliveries(session).claim_due(
            now=datetime.now(UTC), lease=timedelta(seconds=0.2), limit=10
        )
        session.commit()
    assert notify.queue().deliver_due() == 0  # still leased
    notify.deliver_all()

    [call] = hook.calls
    assert call.headers["webhook-id"] == lost.id
    with notify.sessions() as session:  # the dead worker's late answer changes nothing
        assert (
            Deliveries(session).finish(lost, state="failed", error="late", now=datetime.now(UTC))
            is False
        )


def test_a_removed_webhook_fails_its_waiting_deliveries(notify, patient, headers, receiver):
    hook = receiver()
    subscribe_reads(notify, patient, headers, hook.url)
    [webhook] = notify.client.get(f"/patients/{patient}/webhooks", headers=headers).get_json()[
        "items"
    ]
    notify.handle(facts.access(patient))
    removed = notify.client.delete(f"/patients/{patient}/webhooks/{webhook['id']}", headers=headers)
    assert removed.status_code == 204
    notify.deliver_all()
    assert hook.calls == []
    with notify.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.state)).scalar_one() == "failed"


def test_the_payload_carries_no_clinical_content(notify, patient, headers, receiver):
    hook = receiver()
    subscribe_reads(notify, patient, headers, hook.url)
    notify.handle(facts.access(patient))
    notify.deliver_all()
    body = json.loads(hook.calls[0].body)
    assert set(body["data"]["details"]) == {
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
