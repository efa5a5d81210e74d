"""A fact no service signed, put on the broker by a principal that may write there, becomes
neither an entry nor a notification: each consumer dead-letters it and counts it where an
operator scrapes the service (the worker's count is served by the web app beside it)."""

from __future__ import annotations

import re
import uuid

import requests

from caretrail.people import Person
from services.audit.measure_rebuild import practitioner_read
from shared.broker import make_producer
from shared.config import Settings
from shared.events import unsigned_record
from tests.e2e.test_story import bearer, wait_for

SETTINGS = Settings.from_env("e2e")
COMPLIANCE = Person("Cora", "compliance officer", "compliance", "cora")


def refused(url: str, consumer: str) -> float:
    """`caretrail_facts_refused_total` of `consumer` for facts claiming to be records'."""
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    pattern = (
        r'^caretrail_facts_refused_total\{(?=[^}]*consumer="' + re.escape(consumer) + r'")'
        r'(?=[^}]*source="caretrail/records")[^}]*\} ([0-9.e+]+)$'
    )
    return sum(float(m) for m in re.findall(pattern, metrics, flags=re.MULTILINE))


def test_a_forged_fact_is_refused_by_every_consumer_and_counted_on_its_metrics(system, urls):
    before = {service: refused(urls[service], service) for service in ("audit", "notify")}
    forged = practitioner_read(f"pat-forged-{uuid.uuid4().hex[:8]}", "dr-innocent", "org-innocent")
    record = unsigned_record(forged)  # the right shape, but no key signed it
    # The test process is the broker's admin: a service's principal could not write another's
    # topic at all (tests/integration/shared/test_kafka_access.py).
    producer = make_producer(system.bootstrap)
    try:
        producer.send(record.topic, key=record.key, value=record.value, headers=record.headers).get(
            timeout=20
        )
    finally:
        producer.close(timeout=5)

    for service in ("audit", "notify"):
        wait_for(
            f"{service} counting the forged fact",
            lambda s=service: refused(urls[s], s) > before[s],
        )
    entry = requests.get(
        f"{urls['audit']}/audit/events/{forged.id}", headers=bearer(COMPLIANCE), timeout=5
    )
    assert entry.status_code == 404, entry.text
