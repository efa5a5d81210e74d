"""A preventive-care reminder falling due, read from Kafka, becomes one notification on the
patient's channels that names no condition, test or vaccine."""

from __future__ import annotations

import uuid
from datetime import date

from standardwebhooks import Webhook

from shared.broker import make_producer
from shared.events import TOPIC_RECORDS, new_event, to_kafka
from tests.conftest import bearer

TEXT = "A preventive-care reminder is due: open your app"


def reminder_due_on_kafka(kafka_bootstrap, kafka_tap, patient):
    """A `reminder.due` as records' relay publishes it, read back from the broker."""
    tap = kafka_tap(TOPIC_RECORDS)
    event = new_event(
        "reminder.due",
        source_service="records",
        subject=patient,
        actor="system",
        data={
            "patient": patient,
            "rule_id": "colorectal-cancer-screening",
            "due_date": date(2026, 3, 1),
            "rule_set_version": "2026-12-02",
        },
    )
    message = to_kafka(event)
    producer = make_producer(kafka_bootstrap)
    try:
        producer.send(message.topic, key=message.key, value=message.value, headers=message.headers)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)
    (read,) = tap.events(1, where=lambda e: e.id == event.id)
    return read


def test_a_reminder_due_is_told_on_the_patients_channels_without_clinical_detail(
    notify, kafka_bootstrap, kafka_tap, receiver, token
):
    patient = f"p-{uuid.uuid4()}"
    patient_token = token("patient", patient, patient=patient)
    hook = receiver()
    secret = notify.client.post(
        f"/patients/{patient}/webhooks", json={"url": hook.url}, headers=bearer(patient_token)
    ).get_json()["secret"]
    chosen = notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={"kinds": {"reminder-due": {"channels": ["webhook"]}}},
        headers=bearer(patient_token),
    )
    assert chosen.status_code == 200, chosen.get_json()
    event = reminder_due_on_kafka(notify.settings.kafka_bootstrap_servers, kafka_tap, patient)

    assert notify.handle(event)
    assert not notify.handle(event)  # redelivered
    notify.handle(event, consumer="notify-replay")  # replayed by a new group: no second one
    notify.deliver_all()

    [notification] = notify.inbox(patient, patient_token)
    assert (notification["kind"], notification["body"]) == ("reminder-due", TEXT)
    [call] = hook.calls
    delivered = Webhook(secret).verify(call.body, call.headers)
    assert delivered["data"]["body"] == TEXT
    for told in (str(notification), call.body.decode()):
        assert "colorectal" not in told.lower() and "screening" not in told.lower()
