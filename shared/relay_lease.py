"""One relay publishes an outbox, however many workers run: the active relay holds a lease with a
fencing token, and the others stand by to take over when it stops renewing it.

The lease is a row per outbox in the service's own database (`relay_leases`): its holder, its
fencing token, when it expires (a few seconds ahead; the holder renews it every second) and the
Kafka `transactional.id` every relay of that outbox shares. A standby that finds the lease
expired takes it by raising the token in a compare-and-set UPDATE; a holder that stops gracefully
gives it up at once.

Why a lease alone would not keep duplicates off the log: a holder can be paused (SIGSTOP, a long
GC, a frozen VM) after its last check, or killed between the broker's ack and marking the batch
sent; the new holder then publishes the same rows again. So the holder produces each batch in a
Kafka transaction under the shared `transactional.id`, and fencing holds on both sides:

- Kafka: a new holder starts with `init_transactions`, which bumps the producer epoch, aborts
  whatever transaction the old holder left open and fences its producer: a paused holder that
  resumes can neither commit what it had produced nor produce again (ProducerFencedError).
  Consumers read with `isolation_level=read_committed`, so an aborted batch is never delivered.
- Database: a batch is marked sent only if the token is still the holder's, in the transaction
  (on PostgreSQL, the very statement) that marks it; the mark takes the lease row's lock, so a
  takeover waits for a mark in progress and never interleaves with it. Before each batch the
  holder also checks its lease has not run out by its own clock (no round trip), so a resumed
  holder does not even start one.

What remains possible is a crash or a pause between marking a batch sent (database) and
committing its transaction (Kafka), since the two cannot commit together. The mark therefore
records the batch in the lease row (its seqs, when it was marked, and where its first message
landed). A new holder, once `init_transactions` has settled the old holder's transaction one way
or the other, reads that message with `read_committed`: present, the batch is on the log once;
absent, its transaction was aborted and the rows are marked unsent again, to be published
(first, in seq order, so per-key order holds) under the new term. Nothing is lost and nothing is
committed twice; the only cost of a takeover is the lease's expiry plus a second or so.

Clocks: expiry times are the holders' wall clocks, so hosts running workers of one service need
the usual NTP agreement; a skew only makes a takeover early or late, never unsafe, since safety
rests on the token and the producer epoch, not on time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Double,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    column,
    exists,
    literal,
    select,
    table,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import JSON

from shared.broker import make_producer
from shared.kafka_access import client_options, relay_transactions
from shared.outbox import OUTBOX, OutboxRelay

log = logging.getLogger(__name__)

LEASES = "relay_leases"

# A transaction left open by a holder that died blocks `read_committed` readers of its partitions
# until a new holder's `init_transactions` aborts it, or until the broker times it out: this.
TRANSACTION_TIMEOUT_MS = 10_000


# How long a batch's commit may take before its term is given up (see close_batch).
COMMIT_TIMEOUT_SECONDS = 10.0


class CommitStuck(RuntimeError):
    """A batch's Kafka commit got no answer in time: the term is given up."""


class LeaseLost(RuntimeError):
    """Another relay holds the lease now (or this one's ran out): stop publishing."""


def add_relay_lease_table(metadata: MetaData) -> Table:
    """Declare the lease table in a service's metadata (one row per outbox)."""
    return Table(
        LEASES,
        metadata,
        Column("outbox", String(120), primary_key=True),
        Column("transactional_id", String(200), nullable=False),
        Column("token", BigInteger, nullable=False),
        Column("holder", String(200), nullable=False),
        Column("expires_at", Double, nullable=False),
        Column("last_batch", JSON, nullable=True),
    )


_leases = table(
    LEASES,
    column("outbox"),
    column("transactional_id"),
    column("token"),
    column("holder"),
    column("expires_at"),
    column("last_batch", JSON),
)


def holder_name() -> str:
    """This process, as a lease names its holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Term:
    """One holder's tenure of the lease, under one fencing token."""

    token: int
    transactional_id: str
    valid_until: float  # time.monotonic() when the lease runs out, unless renewed
    over: threading.Event = field(default_factory=threading.Event)
    failed: bool = False  # ended by a batch that failed, not by the lease or a stop

    def current(self) -> bool:
        return not self.over.is_set() and time.monotonic() < self.valid_until


class RelayLease:
    """The lease row of one outbox: take it, keep it, give it up, settle its last batch."""

    def __init__(
        self,
        engine: Engine,
        outbox: str = OUTBOX,
        *,
        service: str,
        holder: str,
        seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self.outbox = outbox
        self.transactions = relay_transactions(service)
        self.holder = holder
        self.seconds = seconds

    def acquire(self) -> Term | None:
        """Take the lease if it is free or expired (a new term, a higher token); None if another
        relay holds it."""
        started = time.monotonic()
        now = time.time()
        with self._engine.begin() as conn:
            row = conn.execute(
                select(
                    _leases.c.token,
                    _leases.c.transactional_id,
                    _leases.c.expires_at,
                    _leases.c.holder,
                ).where(_leases.c.outbox == self.outbox)
            ).first()
            if row is not None:
                token, transactional_id, expires_at, holder = row
                # A holder whose term failed (the broker went away) takes its lease again.
                if expires_at > now and holder != self.holder:
                    return None
                if not transactional_id.startswith(self.transactions):
                    # Made before ids named their service: the broker lets no one use it.
                    transactional_id = self._new_transactional_id()
                # Compare-and-set: of two standbys that saw the same expired token, one wins.
                taken = conn.execute(
                    update(_leases)
                    .where(_leases.c.outbox == self.outbox, _leases.c.token == token)
                    .values(
                        token=token + 1,
                        holder=self.holder,
                        expires_at=now + self.seconds,
                        transactional_id=transactional_id,
                    )
                ).rowcount
                return Term(token + 1, transactional_id, started + self.seconds) if taken else None
        return self._create(started, now)

    def _create(self, started: float, now: float) -> Term | None:
        transactional_id = self._new_transactional_id()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    _leases.insert().values(
                        outbox=self.outbox,
                        transactional_id=transactional_id,
                        token=1,
                        holder=self.holder,
                        expires_at=now + self.seconds,
                    )
                )
        except IntegrityError:
            return None  # another relay created it first: it holds the lease
        return Term(1, transactional_id, started + self.seconds)

    def _new_transactional_id(self) -> str:
        return f"{self.transactions}{self.outbox}-{uuid.uuid4().hex}"

    def renew(self, term: Term) -> bool:
        """Push the expiry on; answer False if the token is no longer this term's."""
        started = time.monotonic()
        with self._engine.begin() as conn:
            renewed = conn.execute(
                update(_leases)
                .where(_leases.c.outbox == self.outbox, _leases.c.token == term.token)
                .values(expires_at=time.time() + self.seconds)
            ).rowcount
        if renewed == 1:
            term.valid_until = started + self.seconds
        return renewed == 1

    def release(self, term: Term) -> None:
        """Give the lease up at once, so that a standby need not wait for it to expire."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_leases)
                .where(_leases.c.outbox == self.outbox, _leases.c.token == term.token)
                .values(expires_at=0.0)
            )

    def last_batch(self) -> dict[str, Any] | None:
        """The batch the last mark recorded (see the module docstring)."""
        with self._engine.connect() as conn:
            batch: dict[str, Any] | None = conn.execute(
                select(_leases.c.last_batch).where(_leases.c.outbox == self.outbox)
            ).scalar()
        return batch

    def unmark(self, term: Term, batch: dict[str, Any]) -> int:
        """Mark a batch whose Kafka transaction was aborted unsent again; answer how many rows."""
        rows = table(self.outbox, column("seq"), column("sent_at"))
        with self._engine.begin() as conn:
            self._fence(conn, term, None)
            return int(
                conn.execute(
                    update(rows)
                    .where(
                        rows.c.seq.between(batch["first"], batch["last"]),
                        rows.c.sent_at == bindparam("at", type_=DateTime(timezone=True)),
                    )
                    .values(sent_at=None),
                    {"at": datetime.fromisoformat(batch["sent_at"])},
                ).rowcount
            )

    def _fence(self, conn: Connection, term: Term, batch: dict[str, Any] | None) -> None:
        """Record `batch` as the last one, in the caller's transaction, if the token is current."""
        recorded = conn.execute(
            update(_leases)
            .where(_leases.c.outbox == self.outbox, _leases.c.token == term.token)
            .values(last_batch=batch)
        ).rowcount
        if recorded != 1:
            raise LeaseLost(f"the lease of {self.outbox} has a newer token than {term.token}")

    def mark_fenced(
        self, conn: Connection, term: Term, mark: Any, bounds: dict[str, Any], batch: dict[str, Any]
    ) -> None:
        """Run the relay's `mark` statement only if the token is current, recording `batch`.

        PostgreSQL: one statement, the lease update a data-modifying CTE of the mark (no round
        trip more than the mark itself). SQLite: two statements in one transaction; there is no
        round trip to save, the database is in the process."""
        if conn.dialect.name != "postgresql":
            self._fence(conn, term, batch)
            conn.execute(mark, bounds)
            return
        fence = (
            update(_leases)
            .where(_leases.c.outbox == self.outbox, _leases.c.token == term.token)
            .values(last_batch=bindparam("batch", type_=JSON))
            .returning(_leases.c.token)
            .cte("fence")
        )
        fenced_mark = mark.where(exists(select(literal(1)).select_from(fence)))
        if conn.execute(fenced_mark, {**bounds, "batch": batch}).rowcount == 0:
            raise LeaseLost(f"the lease of {self.outbox} has a newer token than {term.token}")


class TransactionalFence:
    """The `Fence` of shared/outbox.py for one term: a Kafka transaction per batch, marked sent
    under the token."""

    def __init__(self, lease: RelayLease, term: Term, producer: Any) -> None:
        self._lease = lease
        self._term = term
        self._producer = producer

    def open_batch(self) -> None:
        if not self._term.current():
            raise LeaseLost(f"the lease of {self._lease.outbox} ran out")
        self._producer.begin_transaction()

    def mark_sent(
        self,
        connection: Connection,
        mark: Any,
        bounds: dict[str, Any],
        rows: Sequence[Any],
        first: Any,
    ) -> None:
        batch = {
            "first": rows[0][0],
            "last": rows[-1][0],
            "sent_at": bounds["now"].isoformat(),
            "topic": first.topic,
            "partition": first.partition,
            "offset": first.offset,
        }
        self._lease.mark_fenced(connection, self._term, mark, bounds, batch)

    def close_batch(self) -> None:
        # kafka-python waits for a commit without bound, and can lose the commit's request
        # when the transaction coordinator's broker dies under it: the relay then waited
        # forever (tests/faults). Past COMMIT_TIMEOUT_SECONDS the term is given up; the next
        # one's `init_transactions` settles the transaction and `_settle_last_batch` acts on it.
        outcome: list[BaseException | None] = []

        def commit() -> None:
            try:
                self._producer.commit_transaction()
                outcome.append(None)
            except BaseException as err:  # noqa: BLE001 - handed to the relay's thread
                outcome.append(err)

        committing = threading.Thread(target=commit, name="relay-commit", daemon=True)
        committing.start()
        committing.join(COMMIT_TIMEOUT_SECONDS)
        if not outcome:
            raise CommitStuck(f"no answer to a commit in {COMMIT_TIMEOUT_SECONDS}s")
        if outcome[0] is not None:
            raise outcome[0]

    def abandon(self) -> None:
        self._term.failed = True
        self._term.over.set()


def committed_on_kafka(bootstrap_servers: str, batch: dict[str, Any], timeout: float = 10) -> bool:
    """Whether the first message of `batch` is visible to a `read_committed` reader: a Kafka
    transaction is all or nothing, so this says whether the whole batch is on the log."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **client_options(),
    )
    try:
        partition = TopicPartition(batch["topic"], batch["partition"])
        consumer.assign([partition])
        consumer.seek(partition, batch["offset"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=500).get(partition, [])
            if records:
                return bool(records[0].offset == batch["offset"])
            if consumer.position(partition) > batch["offset"]:
                return False  # read past it: aborted messages are skipped
        raise TimeoutError(f"could not read {partition} at {batch['offset']}")
    finally:
        consumer.close()


class LeasedRelay:
    """An outbox relay that publishes only while it holds the outbox's lease, and stands by
    (looking every `standby_seconds`) while another relay holds it."""

    def __init__(
        self,
        engine: Engine,
        bootstrap_servers: str,
        *,
        service: str,
        table_name: str = OUTBOX,
        holder: str | None = None,
        lease_seconds: float = 5.0,
        standby_seconds: float = 0.5,
        **relay_options: Any,
    ) -> None:
        self._engine = engine
        self._bootstrap = bootstrap_servers
        self._table_name = table_name
        self.lease = RelayLease(
            engine,
            table_name,
            service=service,
            holder=holder or holder_name(),
            seconds=lease_seconds,
        )
        self._standby_seconds = standby_seconds
        # Renewed three times a lease: one slow renewal does not lose it.
        self._renew_seconds = lease_seconds / 3
        self._relay_options = relay_options

    def run(self, stop: threading.Event, *, max_backoff_seconds: float = 5.0) -> None:
        """Stand by, hold the lease and publish, until `stop` is set; then give the lease up."""
        backoff = 0.1
        standing_by = False
        while not stop.is_set():
            term: Term | None = None
            try:
                term = self.lease.acquire()
                if term is None:
                    if not standing_by:
                        log.info("relay of %s standing by", self._table_name)
                    standing_by = True
                    stop.wait(self._standby_seconds)
                    continue
                standing_by = False
                self._serve(term, stop)
                if not term.failed:
                    backoff = 0.1
                    continue
            except Exception as err:
                log.warning(
                    "relay of %s: %s: %s; retrying in %.1fs",
                    self._table_name,
                    type(err).__name__,
                    err,
                    backoff,
                )
            finally:
                if term is not None:
                    self._end(term, stop)
            # A failed term or start: wait longer each time (the broker or database is away).
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_seconds)

    def _serve(self, term: Term, stop: threading.Event) -> None:
        """Publish for one term: settle the last term's batch, then batch after batch."""
        producer = make_producer(
            self._bootstrap,
            transactional_id=term.transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            bootstrap_timeout_ms=5000,
        )
        keeper = threading.Thread(
            target=self._keep, args=(term, stop), name=f"lease-{self._table_name}"
        )
        keeper.start()
        try:
            started = time.monotonic()
            producer.init_transactions()  # fences every earlier holder's producer
            self._settle_last_batch(term)
            log.info(
                "relay of %s publishing under token %d (fenced and settled in %.2fs)",
                self._table_name,
                term.token,
                time.monotonic() - started,
            )
            fence = TransactionalFence(self.lease, term, producer)
            relay = OutboxRelay(
                self._engine,
                producer,
                table_name=self._table_name,
                fence=fence,
                **self._relay_options,
            )
            relay.run(term.over)
        finally:
            term.over.set()
            keeper.join()
            producer.close(timeout=1)

    def _settle_last_batch(self, term: Term) -> None:
        batch = self.lease.last_batch()
        if batch is None or committed_on_kafka(self._bootstrap, batch):
            return
        again = self.lease.unmark(term, batch)
        log.warning(
            "relay of %s: the last batch before token %d was never committed to Kafka; "
            "publishing its %d rows again",
            self._table_name,
            term.token,
            again,
        )

    def _keep(self, term: Term, stop: threading.Event) -> None:
        """Renew the lease while the term lasts; end the term when it is lost or runs out."""
        renew_at = time.monotonic() + self._renew_seconds
        while not term.over.wait(0.05):
            if stop.is_set() or not term.current():
                break
            if time.monotonic() < renew_at:
                continue
            try:
                if not self.lease.renew(term):
                    log.warning("relay of %s lost the lease", self._table_name)
                    break
            except Exception as err:  # the database may be back before the lease runs out
                log.warning("relay of %s: renewing: %s", self._table_name, type(err).__name__)
            renew_at = time.monotonic() + self._renew_seconds
        term.over.set()

    def _end(self, term: Term, stop: threading.Event) -> None:
        term.over.set()
        if not stop.is_set():
            return  # a term that failed: keep the lease, the next term takes it again
        try:
            self.lease.release(term)
        except Exception as err:
            log.warning("relay of %s: releasing: %s", self._table_name, type(err).__name__)
