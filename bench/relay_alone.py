"""The outbox relay alone against a running broker: plain (as before the lease) and fenced (what a
worker runs since: each batch a Kafka transaction, marked sent under the lease's token).

    .venv/bin/python -m bench.relay_alone --bootstrap 127.0.0.1:9092 [--db URL] [--events N]

Each run fills the records outbox with N access facts and publishes them in batches of 500; the
two kinds of run alternate, so both see the same machine state.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

from bench.trail import empty_outbox, fill_outbox
from services.records.store import metadata
from shared.broker import make_producer
from shared.db import create_schema, make_engine
from shared.outbox import OutboxRelay
from shared.relay_lease import TRANSACTION_TIMEOUT_MS, RelayLease, TransactionalFence


def publish_all(relay: OutboxRelay) -> tuple[float, float]:
    """Publish every pending row; answer events/s and this process's CPU µs per event (the
    steadier figure on a busy machine)."""
    published = 0
    started, cpu = time.perf_counter(), time.process_time()
    while batch := relay.publish_pending():
        published += batch
    cpu_us = (time.process_time() - cpu) * 1e6 / published
    return published / (time.perf_counter() - started), cpu_us


def plain_rate(engine: Engine, bootstrap: str) -> tuple[float, float]:
    producer = make_producer(bootstrap)
    try:
        return publish_all(OutboxRelay(engine, producer))
    finally:
        producer.close()


def fenced_rate(engine: Engine, bootstrap: str) -> tuple[float, float]:
    lease = RelayLease(engine, service="records", holder="bench", seconds=60)
    term = lease.acquire()
    if term is None:
        raise RuntimeError("the lease is held by another relay")
    producer = make_producer(
        bootstrap,
        transactional_id=term.transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )
    try:
        producer.init_transactions()
        fence = TransactionalFence(lease, term, producer)
        return publish_all(OutboxRelay(engine, producer, fence=fence))
    finally:
        producer.close()
        lease.release(term)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--db", help="a database URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.db or f"sqlite:///{Path(tmp) / 'records.sqlite3'}")
        create_schema(engine, metadata)
        patients = [f"bench-relay-{n}" for n in range(200)]
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "fenced": []}
        for run in range(args.runs):
            for kind, measure in (("plain", plain_rate), ("fenced", fenced_rate)):
                empty_outbox(engine)
                fill_outbox(engine, patients, args.events, seed=run)
                rate, cpu_us = measure(engine, args.bootstrap)
                runs[kind].append((rate, cpu_us))
                print(f"run {run} {kind}: {rate:,.0f} events/s, {cpu_us:.0f} µs CPU/event")
        for kind, figures in runs.items():
            rate = statistics.median(r for r, _ in figures)
            cpu_us = statistics.median(c for _, c in figures)
            print(f"{kind}: median {rate:,.0f} events/s, {cpu_us:.0f} µs CPU/event")


if __name__ == "__main__":
    main()
