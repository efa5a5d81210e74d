"""Account for every request a load made: its fact on Kafka once, and that fact applied once by
every service that reads it.

After a fault, `reconcile` waits until the system has settled (no outbox row unpublished, no
consumer group lagging), then reads the fact topics from their beginning and checks that:
- each request answered as done (`Request.answered`) has exactly one fact carrying its trace id
  (none is lost), and no fact id is on Kafka twice (none is duplicated);
- each such fact has one audit entry, and its notification when notify's own rule calls for one
  (a read that disclosed records is counted in a folded one: the `requests` of the patients'
  read notifications sum to those reads), and records applied each consent change to its
  projection;
- `/audit/verify` answers ok.
Requests that got no answer (or a 5xx) may or may not have their fact; they are not counted as
lost, but their facts are checked like the others. The bench reuses it (`bench/`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text

from services.notify.domain import RECORD_ACCESSED, notice_for
from shared.consumer_lag import ConsumerLag
from shared.db import make_engine
from shared.events import (
    TOPIC_ACCESS,
    TOPIC_CONSENT,
    TOPIC_NOTIFY,
    TOPIC_RECORDS,
    Event,
    from_kafka,
    type_name,
)
from shared.kafka_access import client_options
from tests.support.mixed_load import Request

REQUEST_TOPICS = (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT)
# Every consumer group and what it reads (services/*/worker.py): none may be left lagging.
GROUPS: Mapping[str, tuple[str, ...]] = {
    "audit": (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT, TOPIC_NOTIFY),
    "notify": REQUEST_TOPICS,
    "records": (TOPIC_CONSENT,),
    "consent": (TOPIC_RECORDS,),
}
OUTBOXES = {"records": "outbox", "consent": "consent_events", "audit": "outbox", "notify": "outbox"}
CONSENT_CHANGES = {type_name("consent.granted"), type_name("consent.revoked")}


@dataclass
class Reconciliation:
    scenario: str
    answered: int  # requests answered as done: each promises one fact
    expected: int
    found: int  # of those facts, found on Kafka
    duplicated: int  # messages of our patients beyond the first of their id
    lost: int
    recover_seconds: float  # from the fault's end until nothing was pending or lagging
    not_applied: list[str] = field(default_factory=list)  # downstream effects missing
    verify_ok: bool = True

    def problems(self) -> list[str]:
        found = [f"{self.lost} facts lost"] if self.lost else []
        found += [f"{self.duplicated} facts duplicated"] if self.duplicated else []
        found += self.not_applied
        found += [] if self.verify_ok else ["/audit/verify is not ok"]
        return found


def table(rows: Iterable[Reconciliation]) -> str:
    """The reconcile table: one line per scenario."""
    head = (
        f"{'scenario':<34} {'answered':>8} {'expected':>8} {'found':>6} {'dup':>4} "
        f"{'lost':>5} {'recover s':>9}  downstream"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        downstream = "ok" if not r.not_applied and r.verify_ok else "; ".join(r.problems())
        lines.append(
            f"{r.scenario:<34} {r.answered:>8} {r.expected:>8} {r.found:>6} {r.duplicated:>4} "
            f"{r.lost:>5} {r.recover_seconds:>9.1f}  {downstream}"
        )
    return "\n".join(lines)


def outbox_counters(
    db_urls: Mapping[str, str], services: Iterable[str] = tuple(OUTBOXES)
) -> list[Callable[[], int]]:
    """For each of `services`, a count of its outbox rows not yet published."""

    def counter(url: str, table_name: str) -> Callable[[], int]:
        engine = make_engine(url)
        query = text(f"SELECT count(*) FROM {table_name} WHERE sent_at IS NULL")

        def pending() -> int:
            with engine.connect() as conn:
                return int(conn.execute(query).scalar_one())

        return pending

    return [counter(db_urls[service], OUTBOXES[service]) for service in services]


def settle(bootstrap: str, db_urls: Mapping[str, str], timeout_seconds: float = 60.0) -> float:
    """Wait until no outbox row is unpublished and no group has a fact left to consume; answer
    the seconds it took. A database or broker still refusing connections is not settled yet."""
    started = time.monotonic()
    while True:
        try:
            if not left_over(bootstrap, db_urls):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - still recovering: ask again until the time is up
            pass
        if time.monotonic() - started >= timeout_seconds:
            left_behind = left_over(bootstrap, db_urls)
            raise TimeoutError(f"not settled in {timeout_seconds}s: {left_behind}")
        time.sleep(0.3)


def left_over(bootstrap: str, db_urls: Mapping[str, str]) -> dict[str, int]:
    """What keeps the system from settling: unpublished rows per outbox, facts each group has
    not consumed yet."""
    pending = zip(OUTBOXES, outbox_counters(db_urls), strict=True)
    found = {f"{service} outbox": count() for service, count in pending}
    found |= {f"{group} lag": n for group, n in unconsumed(bootstrap).items()}
    return {what: n for what, n in found.items() if n}


def unconsumed(bootstrap: str, groups: Mapping[str, tuple[str, ...]] = GROUPS) -> dict[str, int]:
    """For each group, the facts on its topics it has not consumed (shared/consumer_lag.py)."""
    with ConsumerLag(bootstrap) as lag:
        return lag.of_each(groups)


def facts_of(bootstrap: str, patients: set[str]) -> list[Event]:
    """Every message on the request topics keyed by one of `patients`, from the beginning."""
    # The log as every consumer reads it: a relay's batch is a Kafka transaction, and one it
    # aborted (fenced, or cut by a fault) is in no consumer's log (shared/relay_lease.py).
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **client_options(),
    )
    try:
        partitions = [
            TopicPartition(t, p)
            for t in REQUEST_TOPICS
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        facts: list[Event] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=500).values():
                facts += [
                    from_kafka(m.headers, m.key, m.value)
                    for m in batch
                    if m.key is not None and m.key.decode() in patients
                ]
        return facts
    finally:
        consumer.close()


def trace_id(event: Event) -> str | None:
    return event.traceparent.split("-")[1] if event.traceparent else None


def reconcile(
    scenario: str,
    made: Sequence[Request],
    *,
    bootstrap: str,
    db_urls: Mapping[str, str],
    audit_url: str,
    compliance_token: str,
    recover_seconds: float,
) -> Reconciliation:
    """Account for the requests `made` (call after `settle`)."""
    patients = {r.patient for r in made}
    facts = facts_of(bootstrap, patients)
    by_trace: dict[str, set[str]] = {}
    for fact in facts:
        by_trace.setdefault(trace_id(fact) or "", set()).add(fact.id)
    answered = [r for r in made if r.answered]
    found = sum(1 for r in answered if len(by_trace.get(r.trace_id, ())) >= 1)
    doubled = sum(1 for r in made if len(by_trace.get(r.trace_id, ())) > 1)
    unique = {f.id: f for f in facts}
    verify = requests.get(
        f"{audit_url}/audit/verify",
        headers={"Authorization": f"Bearer {compliance_token}"},
        timeout=60,
    )
    return Reconciliation(
        scenario=scenario,
        answered=len(answered),
        expected=len(answered),
        found=found,
        # the same id twice, or one request's fact written twice under two ids
        duplicated=len(facts) - len(unique) + doubled,
        lost=len(answered) - found,
        recover_seconds=recover_seconds,
        not_applied=not_applied(list(unique.values()), patients, db_urls),
        verify_ok=verify.ok and verify.json()["ok"],
    )


def not_applied(facts: list[Event], patients: set[str], db_urls: Mapping[str, str]) -> list[str]:
    """What audit, notify and records have not applied of `facts` (exactly once each)."""
    ids = [f.id for f in facts]
    audited = Counter(_column(db_urls["audit"], "SELECT event_id FROM entries", ids))
    noticed = set(_column(db_urls["notify"], "SELECT source_event_id FROM notifications", ids))
    counted = set(_column(db_urls["notify"], "SELECT event_id FROM folded_reads", ids))
    projected = set(
        _column(db_urls["records"], "SELECT event_id FROM inbox WHERE consumer = 'records'", ids)
    )
    missing: Counter[str] = Counter()
    folds = 0  # reads notify folds into read notifications
    for fact in facts:
        if audited[fact.id] != 1:
            missing["audit entry"] += 1
        # What notify tells the patient of the fact, as notify itself decides it (nothing of
        # the patient's own doing, nor of a read that disclosed nothing).
        notice = notice_for(fact)
        if notice is not None and notice.kind == RECORD_ACCESSED:
            folds += 1
            if fact.id not in counted:
                missing["read counted in a notification"] += 1
        elif notice is not None and fact.id not in noticed:
            missing["notification"] += 1
        if fact.type in CONSENT_CHANGES and fact.id not in projected:
            missing["consent change in records' projection"] += 1
    folded = _read_requests(db_urls["notify"], patients)
    if folded != folds:
        missing[f"notified reads ({folded} counted for {folds} reads)"] += 1
    return [f"{count} without {what}" for what, count in sorted(missing.items())]


def _column(url: str, query: str, ids: list[str]) -> list[str]:
    """`query`'s first column, kept to `ids` (asked in slices: a statement has a bound)."""
    engine = make_engine(url)
    column = query.split()[1]
    glue = " AND " if " WHERE " in query else " WHERE "
    found: list[str] = []
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ", ".join(f":i{n}" for n in range(len(part)))
                statement = text(f"{query}{glue}{column} IN ({marks})")
                rows = conn.execute(statement, {f"i{n}": i for n, i in enumerate(part)})
                found += [row[0] for row in rows]
    finally:
        engine.dispose()
    return found


def _read_requests(url: str, patients: set[str]) -> int:
    """The reads counted by the read notifications of `patients` (`details.requests`)."""
    engine = make_engine(url)
    marks = ", ".join(f":p{n}" for n in range(len(patients)))
    query = text(
        f"SELECT details FROM notifications WHERE kind = 'record-accessed' AND patient IN ({marks})"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query, {f"p{n}": p for n, p in enumerate(sorted(patients))})
            return sum(_details(row[0])["requests"] for row in rows)
    finally:
        engine.dispose()


def _details(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)
