"""Measure `caretrail audit rebuild` on a trail of many facts.

Writes `--events` facts (reads, denials, break-glass, records, consents over a thousand
patients) to the broker at `--bootstrap`, then rebuilds the trail twice: the first build
appends them all, the second replays them again and must reproduce every chain head.
Run it against a broker of its own, not one other people's tests read from:

    caretrail kafka start --port 19092 --data-dir /tmp/measure-kafka
    python -m services.audit.measure_rebuild --bootstrap 127.0.0.1:19092 --events 100000

`--processes 2` shares the partitions out among two rebuild processes.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.audit.rebuild import RebuildResult, rebuild
from services.audit.store import metadata
from shared.broker import ensure_topics, make_producer
from shared.db import create_schema, make_engine
from shared.events import Event, new_event, to_kafka


def _fact(n: int, patient: str) -> Event:
    kind = n % 10
    if kind == 0:
        now = datetime.now(UTC)
        return new_event(
            "consent.granted",
            source_service="consent",
            subject=patient,
            actor=f"patient:{patient}",
            data={
                "consent_id": str(uuid4()),
                "patient": patient,
                "version": 1,
                "grantee": {"type": "organization", "id": "org-a"},
                "actions": ["read"],
                "categories": ["*"],
                "purposes": ["TREAT"],
                "period": {"start": now.isoformat(), "end": (now + timedelta(days=90)).isoformat()},
            },
        )
    if kind == 1:
        return new_event(
            "record.created",
            source_service="records",
            subject=patient,
            actor="practitioner:dr-lee",
            data={
                "patient": patient,
                "record_id": str(uuid4()),
                "version": 1,
                "category": "Observation",
                "source": "ehr",
                "author": "dr-lee",
                "author_org": "org-a",
                "content": {"key_id": "k", "nonce": "bm9uY2U=", "ciphertext": "c2VhbGVk"},
                "changed_at": datetime.now(UTC).isoformat(),
            },
        )
    return practitioner_read(
        patient, f"dr-{n % 50}", f"org-{n % 7}", denied=kind == 2, emergency=kind == 3
    )


def practitioner_read(
    patient: str, doctor: str, org: str, *, denied: bool = False, emergency: bool = False
) -> Event:
    """A practitioner's read of one record as records reports it: permitted under a consent,
    refused, or by break-glass."""
    return new_event(
        "access.denied" if denied else "record.accessed",
        source_service="records",
        subject=patient,
        actor=f"practitioner:{doctor}",
        data={
            "patient": patient,
            "actor": f"practitioner:{doctor}",
            "role": "practitioner",
            "org": org,
            "action": "read",
            "record_ids": [str(uuid4())],
            "categories": ["Observation"],
            "purpose": "ETREAT" if emergency else "TREAT",
            "consent_ids": [] if denied or emergency else [str(uuid4())],
            "break_glass_reason": "OVRER" if emergency else None,
            "outcome": "deny" if denied else "permit",
        },
    )


def write_facts(bootstrap: str, count: int) -> float:
    """Write `count` facts; answer the seconds it took."""
    started = time.perf_counter()
    patients = [f"p-{uuid4()}" for _ in range(1000)]
    producer = make_producer(bootstrap, linger_ms=20, batch_size=256 * 1024)
    for n in range(count):
        record = to_kafka(_fact(n, patients[n % len(patients)]))
        producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def _describe(label: str, result: RebuildResult) -> str:
    return (
        f"{label}: {result.events} events in {result.seconds:.1f} s = "
        f"{result.events_per_second:.0f} events/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database-url", default="sqlite:///var/audit-measure.sqlite3")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=1, help="rebuild processes")
    args = parser.parse_args(argv)

    ensure_topics(args.bootstrap)
    print(f"wrote {args.events} facts in {write_facts(args.bootstrap, args.events):.1f} s")
    engine = make_engine(args.database_url)
    create_schema(engine, metadata)
    first = rebuild(engine, args.bootstrap, processes=args.processes)
    print(_describe("first build", first))
    again = rebuild(engine, args.bootstrap, processes=args.processes)
    print(_describe("rebuild", again))
    print(
        f"chain heads equal after the rebuild: {again.heads_equal} "
        f"({len(again.heads_after)} chains)"
    )
    return 0 if again.heads_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
