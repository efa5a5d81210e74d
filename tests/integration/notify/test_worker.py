"""The real worker: an access event on Kafka becomes a notification in the inbox API, a signed
webhook call, and a `notification.delivered` event."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from standardwebhooks import Webhook

from services.notify.worker import TOPICS, build_worker
from shared.broker import make_producer
from shared.events import TOPIC_NOTIFY, Event, to_kafka
from shared.kafka_access import client_options
from tests.conftest import bearer
from tests.unit.notify import facts


def start_group_at_the_end(bootstrap: str, group: str) -> None:
    """Commit the group's offsets at the end of the topics: the broker is shared, and this
    test is about what happens from now on."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        **client_options(),
    )
    try:
        partitions = [
            TopicPartition(t, p) for t in TOPICS for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        consumer.commit(
            {tp: OffsetAndMetadata(consumer.position(tp), None, -1) for tp in partitions}
        )
    finally:
        consumer.close()


def produce(bootstrap: str, *events: Event) -> None:
    producer = make_producer(bootstrap)
    try:
        for event in events:
            record = to_kafka(event)
            producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


@pytest.fixture
def running_worker(notify) -> Iterator[None]:
    group = f"notify-test-{uuid.uuid4()}"
    start_group_at_the_end(notify.settings.kafka_bootstrap_servers, group)
    worker = build_worker(
        notify.settings.with_overrides(
            extra={**notify.settings.extra, "delivery_poll_seconds": "0.05"}
        ),
        consumer_group=group,
    )
    thread = threading.Thread(target=worker.run, name="notify-worker")
    thread.start()
    yield
    worker.stop.set()
    thread.join(timeout=30)


def wait_for(condition, timeout_seconds: float = 30.0):
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.kafka
def test_an_access_event_on_kafka_reaches_the_inbox_and_the_webhook_once(
    notify, running_worker, receiver, token, kafka_tap
):
    patient = f"p-{uuid.uuid4()}"
    own = bearer(token("patient", patient, patient=patient))
    hook = receiver()
    secret = notify.client.post(
        f"/patients/{patient}/webhooks", json={"url": hook.url}, headers=own
    ).get_json()["secret"]
    notify.client.put(
        f"/patients/{patient}/notification-preferences",
        json={"kinds": {"record-accessed": {"channels": ["inbox", "webhook"]}}},
        headers=own,
    )
    tap = kafka_tap(TOPIC_NOTIFY)

    read = facts.access(patient, record_ids=("r-1", "r-2"), consent_ids=("c-1",))
    produce(notify.settings.kafka_bootstrap_servers, read, read)  # delivered twice

    [notification] = wait_for(lambda: notify.inbox(patient, own["Authorization"][7:]))
    assert notification["kind"] == "record-accessed"
    assert notification["body"].startswith("practitioner dr-lee of org-a read 2 records")
    [delivered] = tap.events(1, where=lambda e: e.subject == patient, settle_seconds=1.0)
    assert delivered.type == "caretrail.notification.delivered.v1"
    assert delivered.data["notification_id"] == notification["id"]
    [call] = hook.calls
    assert Webhook(secret).verify(call.body, call.headers)["data"]["id"] == notification["id"]
    assert len(notify.inbox(patient, own["Authorization"][7:])) == 1
