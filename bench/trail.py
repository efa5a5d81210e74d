"""The outbox relay's throughput, the audit rebuild's, and audit queries over a big trail."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, delete

from services.audit.measure_rebuild import practitioner_read, write_facts
from services.audit.rebuild import RebuildResult, rebuild
from services.records.store import metadata as records_metadata
from shared.db import session_factory
from shared.events import FACT_TOPICS, Event, to_kafka
from shared.kafka_access import client_options
from shared.outbox import OutboxRelay, append

OUTBOX = records_metadata.tables["outbox"]  # the records service's outbox


def access_fact(rng: random.Random, patient: str) -> Event:
    """A `record.accessed` fact as records writes it for a practitioner's read."""
    return practitioner_read(patient, f"dr-{rng.randrange(50)}", f"org-{rng.randrange(7)}")


def fill_outbox(engine: Engine, patients: list[str], count: int, seed: int) -> None:
    """Write `count` pending access facts to the records outbox."""
    rng = random.Random(seed)
    sessions = session_factory(engine)
    for start in range(0, count, 5000):
        events = [access_fact(rng, rng.choice(patients)) for _ in range(min(5000, count - start))]
        with sessions() as session:
            append(session, *events)
            session.commit()


def wire_size(seed: int = 0, samples: int = 200) -> int:
    """Mean bytes of an access fact on the wire: value, key and headers."""
    rng = random.Random(seed)
    total = 0
    for _ in range(samples):
        record = to_kafka(access_fact(rng, f"bench-{seed}-r-{rng.randrange(100)}"))
        total += (
            len(record.value) + len(record.key) + sum(len(n) + len(v) for n, v in record.headers)
        )
    return total // samples


def relay_throughput(engine: Engine, producer: object) -> tuple[int, float]:
    """Publish every pending row with the relay the workers run; answer (events, events/s)."""
    relay = OutboxRelay(engine, producer)
    published = 0
    started = time.perf_counter()
    while True:
        batch = relay.publish_pending()
        if batch == 0:
            break
        published += batch
    return published, published / (time.perf_counter() - started)


def client_throughput(producer: Any, count: int, seed: int) -> float:
    """The relay's ceiling in Python: kafka-python sending `count` access facts, already
    encoded, with no database around it; answer events/s."""
    rng = random.Random(seed)
    records = [
        to_kafka(access_fact(rng, f"bench-{seed}-c-{rng.randrange(100)}")) for _ in range(count)
    ]
    started = time.perf_counter()
    futures = [producer.send(r.topic, key=r.key, value=r.value, headers=r.headers) for r in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    return count / (time.perf_counter() - started)


def empty_outbox(engine: Engine) -> None:
    """Drop the sent rows the runs left, so each run starts from the same outbox."""
    with engine.begin() as conn:
        conn.execute(delete(OUTBOX))


def messages_by_topic(bootstrap: str) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), **client_options())
    try:
        partitions = [
            TopicPartition(t, p)
            for t in FACT_TOPICS
            for p in consumer.partitions_for_topic(t) or ()
        ]
        counts: dict[str, int] = dict.fromkeys(FACT_TOPICS, 0)
        for tp, end in consumer.end_offsets(partitions).items():
            counts[tp.topic] += end
        return counts
    finally:
        consumer.close()


def grow_trail(bootstrap: str, size: int) -> int:
    """Write facts until the fact topics hold `size` messages; answer how many were written."""
    missing = size - sum(messages_by_topic(bootstrap).values())
    if missing > 0:
        write_facts(bootstrap, missing)
    return max(0, missing)


def rebuild_trail(engine: Engine, bootstrap: str, processes: int = 1) -> RebuildResult:
    """`caretrail audit rebuild --processes N`'s replay against the audit database."""
    return rebuild(engine, bootstrap, processes=processes)


def query_latencies(
    url: str, token: str, paths: list[tuple[str, dict[str, str]]], samples: int, seed: int
) -> list[float]:
    """ms of `samples` GETs, one at a time, each picked at random from `paths`."""
    rng = random.Random(seed)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    for path, params in paths[:10]:  # warm up
        session.get(f"{url}{path}", params=params, headers=headers, timeout=30)
    timings = []
    for _ in range(samples):
        path, params = rng.choice(paths)
        started = time.perf_counter()
        response = session.get(f"{url}{path}", params=params, headers=headers, timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
    return timings


def actor_period_queries(since: datetime) -> list[tuple[str, dict[str, str]]]:
    """Searches by actor over the bench's period (the facts' actors are dr-0 … dr-49)."""
    until = datetime.now(UTC) + timedelta(hours=1)
    return [
        (
            "/audit/events",
            {
                "actor": f"practitioner:dr-{n}",
                "since": since.isoformat(),
                "until": until.isoformat(),
            },
        )
        for n in range(50)
    ]
