"""Rebuild the trail from Kafka: empty the projection and replay every fact topic from offset 0.

The replay reads each partition in offset order, as the live consumer does, and appends with
the same code, so the chains it builds are the chains the live consumer built: same entries,
same duplicates skipped, same hashes. It reads up to the end offsets it finds when it starts
(or those it is given), with no consumer group, and it must run while the audit worker is
stopped: a worker appending at the same time would interleave its entries with the replay's.

Each partition is a chain of its own, and a fact's copies share its partition (its key), so
the partitions can be shared out among processes: each replays its share, in offset order.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine

from services.audit.consumers import HANDLERS, append_facts
from services.audit.domain import ChainHead
from services.audit.store import AUDIT_CONSUMER, AuditUnitOfWork, Trail, reset_projection
from shared.db import make_engine, session_factory
from shared.events import FACT_TOPICS, InvalidEvent, authenticity_problem, from_kafka
from shared.fact_signing import FactKeys
from shared.inbox import Origin
from shared.kafka_access import client_options

Offsets = Mapping[TopicPartition, int]


class WorkerStillRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class RebuildResult:
    events: int
    skipped: int
    seconds: float
    heads_before: tuple[ChainHead, ...]
    heads_after: tuple[ChainHead, ...]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def heads_equal(self) -> bool:
        return self.heads_before == self.heads_after

    def changed_chains(self) -> list[str]:
        before = {(h.topic, h.partition): h for h in self.heads_before}
        after = {(h.topic, h.partition): h for h in self.heads_after}
        return [
            f"{topic}/{partition}"
            for topic, partition in sorted(before.keys() | after.keys())
            if before.get((topic, partition)) != after.get((topic, partition))
        ]


def require_stopped_worker(bootstrap_servers: str, group: str = AUDIT_CONSUMER) -> None:
    """Refuse to go on while members of the audit worker's consumer group are alive."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), **client_options())
    try:
        described = admin.describe_groups([group]).get(group, {})
    finally:
        admin.close()
    if described.get("members"):
        raise WorkerStillRunning(
            f"the audit worker (consumer group {group!r}) is running; stop it first"
        )


def rebuild(
    engine: Engine,
    bootstrap_servers: str,
    *,
    until: Offsets | None = None,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    processes: int = 1,
) -> RebuildResult:
    """Empty the trail and replay every fact topic from offset 0 up to `until` (default:
    the end offsets at the start), in `processes` processes sharing the partitions."""
    sessions = session_factory(engine)
    with AuditUnitOfWork(sessions) as uow:
        before = uow.trail.heads()
        reset_projection(uow.session)
        uow.commit()
    started = time.perf_counter()
    if processes == 1:
        events, skipped = _replay(sessions, bootstrap_servers, until, batch_size, progress)
    else:
        url = engine.url.render_as_string(hide_password=False)
        events, skipped = _replay_in_processes(url, bootstrap_servers, until, batch_size, processes)
    seconds = time.perf_counter() - started
    with AuditUnitOfWork(sessions) as uow:
        after = uow.trail.heads()
    return RebuildResult(events, skipped, seconds, before, after)


def _replay_in_processes(
    url: str, bootstrap_servers: str, until: Offsets | None, batch_size: int, processes: int
) -> tuple[int, int]:
    if until is None:  # every share must stop at the same ends
        consumer = _replay_consumer(bootstrap_servers, batch_size)
        try:
            until = consumer.end_offsets(_fact_partitions(consumer))
        finally:
            consumer.close()
    context = get_context("spawn")  # no Kafka threads or database connections carried over
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        shares = [
            pool.submit(
                _replay_share, url, bootstrap_servers, dict(until), batch_size, (n, processes)
            )
            for n in range(processes)
        ]
        counts = [share.result() for share in shares]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _replay_share(
    url: str, bootstrap_servers: str, until: Offsets, batch_size: int, share: tuple[int, int]
) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        return _replay(session_factory(engine), bootstrap_servers, until, batch_size, None, share)
    finally:
        engine.dispose()


def _replay_consumer(bootstrap_servers: str, batch_size: int) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=None,
        enable_auto_commit=False,
        # As the live consumers: a batch a fenced relay never committed is not a fact.
        isolation_level="read_committed",
        max_poll_records=batch_size,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **client_options(),
    )


def _fact_partitions(consumer: KafkaConsumer) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in FACT_TOPICS
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


def _replay(
    sessions: Any,
    bootstrap_servers: str,
    until: Offsets | None,
    batch_size: int,
    progress: Callable[[int], None] | None,
    share: tuple[int, int] = (0, 1),
) -> tuple[int, int]:
    """Replay share `n` of `shares` of the fact partitions: every shares-th, from the n-th."""
    consumer = _replay_consumer(bootstrap_servers, batch_size)
    try:
        n, shares = share
        partitions = _fact_partitions(consumer)[n::shares]
        end = dict(until) if until is not None else consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if end.get(tp, 0) > 0}
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
        events = skipped = 0
        heads: dict[tuple[str, int], ChainHead] = {}
        while pending:
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                wanted = [m for m in messages if m.offset < end.get(tp, 0)]
                appended, ignored = _apply(sessions, wanted, heads)
                events, skipped = events + appended, skipped + ignored
                if consumer.position(tp) >= end.get(tp, 0):
                    pending.discard(tp)
                    consumer.pause(tp)  # or it goes on fetching, and parsing, what it drops
            if progress is not None:
                progress(events)
        return events, skipped
    finally:
        consumer.close()


@functools.cache
def _trusted_keys() -> FactKeys:
    # Read once per replaying process, from where the live worker reads them.
    return FactKeys.from_directory()


def _apply(
    sessions: Any, messages: list[Any], heads: dict[tuple[str, int], ChainHead]
) -> tuple[int, int]:
    """Append a batch in one transaction; answer (messages handled, messages not facts)."""
    # Parsed before the transaction: on SQLite, other processes may write meanwhile.
    facts = []
    for message in messages:
        origin = Origin(message.topic, message.partition, message.offset, message.timestamp)
        try:
            event = from_kafka(message.headers or [], message.key, message.value)
        except InvalidEvent:
            continue  # dead-lettered when it was consumed live, never in the trail
        if authenticity_problem(event, _trusted_keys()) is not None:
            continue  # the same: refused live, so never in the trail
        if event.type in HANDLERS:
            facts.append((event, origin))
    with sessions() as session:
        append_facts(Trail(session, known_heads=heads), facts)
        session.commit()
    return len(facts), len(messages) - len(facts)
