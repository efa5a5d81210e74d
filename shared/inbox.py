"""The consumer loop: each event takes effect once in the service's database.

For every message: parse it as a caretrail event, then in one transaction record its id in
the inbox (primary key: consumer group + event id) and run the handler; the messages of one
partition that arrive in one poll share that transaction, and a `BatchHandler` gets them in
one call (audit appends them with one INSERT). A redelivered event finds its inbox row and is
skipped. Offsets are committed to Kafka only after the database commit, so a crash between
the two redelivers the event, and the inbox makes that a no-op.
A message that is not a valid event, not signed by its source's key (`shared.fact_signing`),
or whose handler keeps failing, goes to the DLQ with its origin and error, and the loop goes on.
A handler that fails because the database is away (restarting, failing over) is tried again
until it is back, however long: the message is not at fault, and a dead letter would lose its
effect.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, column, select, table
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from shared.errors import describe_error
from shared.events import TOPIC_DLQ, Event, InvalidEvent, authenticity_problem, from_kafka
from shared.fact_signing import FactKeys
from shared.stall_watch import CallClock, StallWatch
from shared.telemetry import context_from_traceparent

log = logging.getLogger(__name__)
tracer = trace.get_tracer("caretrail.consumer")

INBOX = "inbox"

# How long a handler waits at most between tries while its database is away.
_LONGEST_DATABASE_WAIT_SECONDS = 2.0
# kafka-python 3.0.12 retries a commit without a deadline for ever while the coordinator is
# away; bounded, the loop gets to its own checks, and an uncommitted batch comes back to the
# inbox, which skips it.
_COMMIT_TIMEOUT_MS = 10_000


class ConsumerStopping(Exception):
    """Asked to stop while a message waited: it stays uncommitted."""


def database_away(err: BaseException) -> bool:
    """Whether `err` says the database could not be reached or dropped the connection (a
    restart, a failover, SQLite's lock held too long), rather than that the work failed."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, OperationalError | DisconnectionError)


# The group refuses a member's commits while it rebalances, or once it has dropped the member.
COMMIT_REFUSED = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


@functools.cache
def _refused_facts() -> Counter:
    return Counter(
        "caretrail_facts_refused_total",
        "Facts sent to the DLQ because their signature does not verify for their source",
        ["consumer", "source"],
    )


def add_inbox_table(metadata: MetaData) -> Table:
    """Declare the inbox table in a service's metadata."""
    return Table(
        INBOX,
        metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("topic", String(120), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", Integer, nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False),
    )


_inbox = table(
    INBOX,
    column("consumer"),
    column("event_id"),
    column("topic"),
    column("partition"),
    column("offset"),
    column("handled_at"),
)


@dataclass(frozen=True)
class Origin:
    """Where a message was read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


Handler = Callable[[Session, Event, Origin], None]
Fact = tuple[Event, Origin]


class BatchHandler:
    """A handler that takes the new events of a poll's partition in one call, in Kafka order,
    so that it can write them set-wise; called with one event it is a plain `Handler`.

    Give the same instance for every type it handles: consecutive events of those types
    make one call. A batch that fails is retried event by event, so a poison message is
    still dead-lettered alone.
    """

    def __init__(self, handle_all: Callable[[Session, Sequence[Fact]], None]) -> None:
        self.handle_all = handle_all

    def __call__(self, session: Session, event: Event, origin: Origin) -> None:
        self.handle_all(session, [(event, origin)])


def _handled_among(session: Session, consumer: str, event_ids: list[str]) -> set[str]:
    return set(
        session.execute(
            select(_inbox.c.event_id).where(
                _inbox.c.consumer == consumer, _inbox.c.event_id.in_(event_ids)
            )
        ).scalars()
    )


def _inbox_row(consumer: str, event: Event, origin: Origin) -> dict[str, Any]:
    return {
        "consumer": consumer,
        "event_id": event.id,
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "handled_at": datetime.now(UTC),
    }


# Built once: a statement built per call costs more than running it (bench/profile_read.py).
_RECORD_HANDLED = _inbox.insert()


Delivery = tuple[Event, Origin, Handler]


class HandledElsewhere(Exception):
    """Another member of the consumer group committed one of these events first."""


def handle_in_one_transaction(
    sessions: Callable[[], Session], consumer: str, deliveries: list[Delivery]
) -> int:
    """Run each handler once per event, all in one transaction; answer how many ran.

    Events this consumer already handled (an earlier delivery, or a repeat within the
    batch) are skipped. If another member of the group committed one of them first, during
    a rebalance, nothing of this transaction stands: `HandledElsewhere` says so.
    """
    with sessions() as session:
        seen = _handled_among(session, consumer, [event.id for event, _, _ in deliveries])
        fresh: list[Delivery] = []
        for delivery in deliveries:
            if delivery[0].id not in seen:
                seen.add(delivery[0].id)
                fresh.append(delivery)
        for handler, run in groupby(fresh, key=lambda delivery: delivery[2]):
            _run_handler(session, consumer, handler, [(event, origin) for event, origin, _ in run])
        handled = [_inbox_row(consumer, event, origin) for event, origin, _ in fresh]
        try:
            # In PostgreSQL a row another member is committing makes this insert wait, then fail.
            if handled:
                session.execute(_RECORD_HANDLED, handled)
            session.commit()
        except IntegrityError as err:
            raise HandledElsewhere(describe_error(err)) from err
        return len(handled)


def _run_handler(session: Session, consumer: str, handler: Handler, facts: list[Fact]) -> None:
    """Run `handler` on consecutive facts: in one call if it is a `BatchHandler`."""
    if isinstance(handler, BatchHandler):
        with ExitStack() as spans:
            for event, origin in facts:
                spans.enter_context(_consumer_span(consumer, event, origin))
            handler.handle_all(session, facts)
        return
    for event, origin in facts:
        with _consumer_span(consumer, event, origin):
            handler(session, event, origin)


def handle_once(
    sessions: Callable[[], Session],
    consumer: str,
    handler: Handler,
    event: Event,
    origin: Origin,
) -> bool:
    """Run `handler` for `event` unless this consumer already did; answer whether it ran."""
    try:
        return handle_in_one_transaction(sessions, consumer, [(event, origin, handler)]) == 1
    except HandledElsewhere:
        return False  # another member of the group handled it during a rebalance: theirs stands


@contextmanager
def _consumer_span(consumer: str, event: Event, origin: Origin) -> Iterator[None]:
    """A span in the trace of the request that caused the event (its `traceparent`)."""
    with tracer.start_as_current_span(
        f"consume {event.short_type}",
        context=context_from_traceparent(event.traceparent),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": origin.topic,
            "messaging.kafka.partition": origin.partition,
            "messaging.kafka.offset": origin.offset,
            "messaging.message.id": event.id,
            "caretrail.consumer": consumer,
        },
    ):
        yield


# Reads where partitions end with a client other than the member's (shared.broker.log_ends).
EndReader = Callable[[list[TopicPartition]], dict[TopicPartition, int]]


class MembershipStuck(RuntimeError):
    """The member no longer works for its group, though its client reports nothing wrong.

    Two ways, both seen with kafka-python 3.0.12. The group refuses every commit for longer
    than a rebalance takes: a poll that timed out while the member's SyncGroup was in flight
    left it believing it had joined. Or one of its partitions stalls: facts wait and its
    position does not move (shared/stall_watch.py). A new member (a new consumer) joins
    cleanly; what the stuck one handled is in the inbox already.
    """


class ConsumerLoop:
    """Consume `topics` as group `consumer`, handling each event type with its handler."""

    def __init__(
        self,
        *,
        consumer: str,
        kafka_consumer: Any,
        producer: Any,
        sessions: Callable[[], Session],
        handlers: dict[str, Handler],
        topics: Iterable[str],
        fact_keys: FactKeys,
        max_tries: int = 5,
        first_backoff_seconds: float = 0.1,
        stuck_after_seconds: float = 20.0,
        stalled_after_seconds: float = 20.0,
        ends_elsewhere: EndReader | None = None,
    ) -> None:
        self.consumer = consumer
        self._kafka = kafka_consumer
        self._producer = producer
        self._sessions = sessions
        self._handlers = handlers
        self._topics = list(topics)
        self._fact_keys = fact_keys
        self._max_tries = max_tries
        self._first_backoff = first_backoff_seconds
        self._stuck_after = stuck_after_seconds
        self._refused_since: float | None = None
        self._stalls = StallWatch(stalled_after_seconds)
        self._ends_elsewhere = ends_elsewhere
        self._stall_check_every = stalled_after_seconds / 4
        self._next_stall_check = 0.0
        self.calls = CallClock()
        self.stop = threading.Event()
        self._abandoned = threading.Event()

    def stop_on_signals(self) -> None:
        """Finish the message at hand, commit offsets and leave on SIGTERM or SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())

    def run(self) -> None:
        """Poll until `stop` is set; raise MembershipStuck when the group keeps refusing, or
        a partition stalls."""
        # Join the group knowing every topic's partitions: a member whose metadata lacks them
        # is assigned nothing, until its next metadata refresh.
        with self.calls.timing("partitions_for_topic"):
            for topic in self._topics:
                self._kafka.partitions_for_topic(topic)
        self._kafka.subscribe(self._topics)
        try:
            while not self._ending():
                self._check_progress()
                try:
                    # A poll returns as soon as it has messages: the timeout is for an idle
                    # topic, and long enough for a rebalance to finish within one poll.
                    self.poll_once(timeout_ms=1000)
                except ConsumerStopping:
                    return
                except KafkaError as err:
                    # A rebalance or a broker away: uncommitted events come back, and the
                    # inbox makes their second delivery a no-op.
                    log.warning("%s: %s; polling again", self.consumer, describe_error(err))
                    self._check_refusals(err)
                    self.stop.wait(1.0)
        finally:
            # Leave the group if the coordinator answers soon; a stuck member must not wait long.
            self._kafka.close(autocommit=False, timeout_ms=5000)

    def abandon(self) -> None:
        """Give up on a member stuck in a call (`calls`), from another thread: it handles and
        commits nothing more, and its client is closed, which fails the call it waits in
        (kafka-python fails every pending wait when its IO loop stops). Closing is left to a
        thread of its own, since a stuck client may take its time."""
        self._abandoned.set()
        closing = functools.partial(self._kafka.close, autocommit=False, timeout_ms=5000)
        threading.Thread(target=closing, name=f"{self.consumer}-abandoned", daemon=True).start()

    def _ending(self) -> bool:
        return self.stop.is_set() or self._abandoned.is_set()

    def poll_once(self, timeout_ms: int = 200) -> int:
        """Handle one poll's messages; answer how many were consumed.

        Each partition's messages are handled in one transaction. When that fails, they are
        handled again one by one, so that only the message that keeps failing is dead-lettered.
        """
        with self.calls.timing("poll"):
            batches = self._kafka.poll(timeout_ms=timeout_ms)
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        try:
            for tp, messages in batches.items():
                if self._ending():
                    break
                self._handle_batch(messages)
                done[tp] = OffsetAndMetadata(messages[-1].offset + 1, None, -1)
        finally:
            if done:
                with self.calls.timing("commit"):
                    self._kafka.commit(offsets=done, timeout_ms=_COMMIT_TIMEOUT_MS)
                self._refused_since = None
        return sum(len(batches[tp]) for tp in done)

    def _check_progress(self) -> None:
        now = time.monotonic()
        if now < self._next_stall_check:
            return
        self._next_stall_check = now + self._stall_check_every
        assigned = list(self._kafka.assignment())
        ends = self._ends(assigned)
        positions = {tp: self._position(tp) for tp in assigned}
        stalls = self._stalls.observe(now, positions, ends)
        if stalls:
            raise MembershipStuck(f"{self.consumer}: " + "; ".join(map(str, stalls)))

    def _ends(self, assigned: list[TopicPartition]) -> dict[TopicPartition, int] | None:
        """Where the member's partitions end, as its own client reads them or, failing that,
        as a fresh client does (None if neither can)."""
        if not assigned:
            return {}
        try:
            with self.calls.timing("end_offsets"):
                return dict(self._kafka.end_offsets(assigned, timeout_ms=5000))
        except KafkaError as err:
            log.warning("%s: the log's end is unreadable (%s)", self.consumer, type(err).__name__)
        if self._ends_elsewhere is None:
            return None
        try:
            with self.calls.timing("end_offsets by a fresh client"):
                return self._ends_elsewhere(assigned)
        except KafkaError as err:
            log.warning(
                "%s: a fresh client cannot read the log's end either (%s)",
                self.consumer,
                type(err).__name__,
            )
            return None

    def _position(self, tp: TopicPartition) -> int | None:
        try:
            with self.calls.timing("position"):
                return self._kafka.position(tp, timeout_ms=1000)
        except KafkaError:
            return self._stalls.last_position(tp)

    def _check_refusals(self, err: KafkaError) -> None:
        if not isinstance(err, COMMIT_REFUSED):
            return
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
        elif now - self._refused_since > self._stuck_after:
            raise MembershipStuck(
                f"{self.consumer}: the group has refused every commit for "
                f"{now - self._refused_since:.0f}s"
            )

    def _handle_batch(self, messages: list[Any]) -> None:
        deliveries: list[tuple[Any, Delivery]] = []
        for message in messages:
            origin = Origin(message.topic, message.partition, message.offset, message.timestamp)
            try:
                event = from_kafka(message.headers or [], message.key, message.value)
            except InvalidEvent as err:
                self._dead_letter(message, origin, describe_error(err), tries=1)
                continue
            forged = authenticity_problem(event, self._fact_keys)
            if forged is not None:
                self._refuse_unauthentic(message, origin, event, forged)
                continue
            handler = self._handlers.get(event.type)
            if handler is not None:
                deliveries.append((message, (event, origin, handler)))
        if not deliveries:
            return
        try:
            handle_in_one_transaction(self._sessions, self.consumer, [d for _, d in deliveries])
        except Exception as err:
            log.warning(
                "%s: a batch of %d failed (%s); handling them one by one",
                self.consumer,
                len(deliveries),
                type(err).__name__,
            )
            for message, (event, origin, handler) in deliveries:
                self._handle_with_retries(message, event, origin, handler)

    def _handle_with_retries(
        self, message: Any, event: Event, origin: Origin, handler: Handler
    ) -> None:
        backoff = self._first_backoff
        attempt = 0
        while attempt < self._max_tries:
            try:
                handle_once(self._sessions, self.consumer, handler, event, origin)
                return
            except Exception as err:
                if database_away(err):
                    backoff = self._wait_for_database(event, err, backoff)
                    continue
                attempt += 1
                error = describe_error(err)
                log.warning(
                    "%s: %s failed (try %d of %d): %s",
                    self.consumer,
                    event.id,
                    attempt,
                    self._max_tries,
                    type(err).__name__,
                )
                if attempt == self._max_tries:
                    self._dead_letter(message, origin, error, tries=attempt)
                    return
                time.sleep(backoff)
                backoff *= 2

    def _refuse_unauthentic(self, message: Any, origin: Origin, event: Event, why: str) -> None:
        # Ids, type and claimed source only: the data of a forged fact is not ours to repeat.
        log.warning(
            "%s: refused fact %s (%s, claims source %s) at %s/%d/%d: %s",
            self.consumer,
            event.id,
            event.type,
            event.source,
            origin.topic,
            origin.partition,
            origin.offset,
            why,
        )
        _refused_facts().labels(self.consumer, event.source).inc()
        self._dead_letter(message, origin, f"not authentic: {why}", tries=1)

    def _wait_for_database(self, event: Event, err: Exception, backoff: float) -> float:
        """Wait before trying `event` again, without counting a try: the message is not at
        fault, and dead-lettering it would lose its effect for good. Stopping meanwhile leaves
        it uncommitted, to be delivered again."""
        log.warning(
            "%s: %s waits for the database: %s", self.consumer, event.id, describe_error(err)
        )
        if self.stop.wait(backoff):
            raise ConsumerStopping(f"{self.consumer}: stopped while the database was away")
        return min(backoff * 2, _LONGEST_DATABASE_WAIT_SECONDS)

    def _dead_letter(self, message: Any, origin: Origin, error: str, *, tries: int) -> None:
        """Send the message as it was to the DLQ, with where it came from and why it failed."""
        headers = list(message.headers or []) + [
            ("dlq_consumer", self.consumer.encode()),
            ("dlq_topic", origin.topic.encode()),
            ("dlq_partition", str(origin.partition).encode()),
            ("dlq_offset", str(origin.offset).encode()),
            ("dlq_error", error.encode()),
            ("dlq_tries", str(tries).encode()),
        ]
        log.error(
            "%s: dead-lettered %s/%d@%d",
            self.consumer,
            origin.topic,
            origin.partition,
            origin.offset,
        )
        future = self._producer.send(
            TOPIC_DLQ, key=message.key, value=message.value, headers=headers
        )
        # Wait for the ack: the offset is committed after this returns.
        future.get(timeout=30)
