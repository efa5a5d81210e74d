"""Reads by another organization follow the local projection of caretrail.consent.v1."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from kafka import TopicPartition

from services.records.consumers import HANDLERS
from shared.broker import make_consumer, make_producer
from shared.events import TOPIC_ACCESS, TOPIC_CONSENT, to_kafka
from shared.fact_signing import FactKeys
from shared.inbox import ConsumerLoop
from tests.conftest import bearer
from tests.integration.records.support import (
    consent_ended,
    consent_granted,
    observation,
)


def test_a_consent_without_the_psy_label_withholds_psy_records_from_lists_and_refuses_them(
    records, kafka_tap, token
):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    plain = records.write(author, patient, observation("8867-4"))
    mental = records.write(author, patient, observation("44249-1", "PSY"))
    granted = consent_granted(patient, ("practitioner", "dr-b"), categories=["Observation"])
    records.project(granted)
    reader = bearer(token("practitioner", "dr-b", org="org-b"))

    listed = records.client.get(f"/patients/{patient}/records", headers=reader)
    alone = records.client.get(f"/patients/{patient}/records/{mental}", headers=reader)
    allowed = records.client.get(f"/patients/{patient}/records/{plain}", headers=reader)

    assert [r["id"] for r in listed.json["items"]] == [plain]
    assert alone.status_code == 403 and "PSY" in alone.json["detail"]
    assert allowed.status_code == 200
    records.publish()
    events = access.events(3, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [(e.short_type, e.data["record_ids"]) for e in events] == [
        ("record.accessed", [plain]),
        ("access.denied", [mental]),
        ("record.accessed", [plain]),
    ]
    assert events[0].data["consent_ids"] == [granted.data["consent_id"]]


def test_a_consent_naming_the_label_shares_the_sensitive_record(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    mental = records.write(author, patient, observation("44249-1", "PSY"))
    records.project(consent_granted(patient, ("organization", "org-b"), labels=["PSY"]))
    reader = bearer(token("practitioner", "dr-b", org="org-b"))

    response = records.client.get(f"/patients/{patient}/records/{mental}", headers=reader)

    assert response.status_code == 200
    assert response.json["security"] == ["PSY"]


def test_a_purpose_the_consent_does_not_name_is_refused(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation())
    records.project(consent_granted(patient, ("practitioner", "dr-b"), purposes=["TREAT"]))
    reader = bearer(token("practitioner", "dr-b", org="org-b"))
    path = f"/patients/{patient}/records/{record_id}"

    for_research = records.client.get(path, headers={**reader, "X-Purpose-Of-Use": "HRESCH"})
    for_treatment = records.client.get(path, headers={**reader, "X-Purpose-Of-Use": "TREAT"})
    unknown = records.client.get(path, headers={**reader, "X-Purpose-Of-Use": "CURIOSITY"})

    assert for_research.status_code == 403 and "HRESCH" in for_research.json["detail"]
    assert for_treatment.status_code == 200
    assert unknown.status_code == 422


def test_a_consent_whose_period_has_ended_is_refused_even_before_its_expiry_event(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation())
    past = datetime.now(UTC) - timedelta(days=10)
    records.project(
        consent_granted(patient, ("practitioner", "dr-b"), start=past, end=past + timedelta(days=1))
    )
    reader = bearer(token("practitioner", "dr-b", org="org-b"))

    response = records.client.get(f"/patients/{patient}/records/{record_id}", headers=reader)

    assert response.status_code == 403 and "expired" in response.json["detail"]


def test_an_expired_consent_is_refused(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation())
    granted = consent_granted(patient, ("practitioner", "dr-b"))
    records.project(granted)
    records.project(consent_ended("consent.expired", granted))
    reader = bearer(token("practitioner", "dr-b", org="org-b"))

    response = records.client.get(f"/patients/{patient}/records/{record_id}", headers=reader)

    assert response.status_code == 403 and "expired" in response.json["detail"]


def test_a_revocation_consumed_from_kafka_ends_access(records, kafka_bootstrap, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation())
    reader = bearer(token("practitioner", "dr-b", org="org-b"))
    path = f"/patients/{patient}/records/{record_id}"
    consumer = make_consumer(kafka_bootstrap, f"records-test-{uuid.uuid4()}")
    partitions = [
        TopicPartition(TOPIC_CONSENT, p)
        for p in sorted(consumer.partitions_for_topic(TOPIC_CONSENT) or ())
    ]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    producer = make_producer(kafka_bootstrap)
    loop = ConsumerLoop(
        consumer="records",
        kafka_consumer=consumer,
        producer=producer,
        sessions=records.sessions,
        handlers=HANDLERS,
        topics=[TOPIC_CONSENT],
        fact_keys=FactKeys.from_directory(),
    )

    def poll_until_stopped() -> None:
        # poll_once on the assigned partitions: run() would subscribe as a group member.
        while not loop.stop.is_set():
            loop.poll_once()

    polling = threading.Thread(target=poll_until_stopped, daemon=True)
    polling.start()

    def send(event):
        message = to_kafka(event)
        producer.send(
            message.topic, key=message.key, value=message.value, headers=message.headers
        ).get(timeout=10)

    def status_within(expected: int, seconds: float = 15.0) -> int:
        deadline = time.monotonic() + seconds
        while True:
            status = records.client.get(path, headers=reader).status_code
            if status == expected or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    try:
        granted = consent_granted(patient, ("practitioner", "dr-b"))
        send(granted)
        assert status_within(200) == 200
        send(consent_ended("consent.revoked", granted))
        assert status_within(403) == 403
    finally:
        loop.stop.set()
        polling.join(timeout=5)
        consumer.close(autocommit=False)
        producer.close(timeout=5)
