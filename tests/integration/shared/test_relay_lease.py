"""One relay publishes an outbox however many run: the lease, a takeover when its holder is
killed, and a paused holder that resumes after losing it, on both databases and a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.future import Future
from kafka.producer.future import RecordMetadata
from sqlalchemy import text

from shared.events import TOPIC_RECORDS
from shared.outbox import OutboxRelay
from shared.relay_lease import LeaseLost, RelayLease, TransactionalFence
from tests.integration.shared import tiny_service as tiny
from tests.support.kafka_tap import KafkaTap

ROOT = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 2.0


@pytest.fixture
def outbox(database_url: str) -> Iterator[tuple[Any, Any]]:
    engine, sessions = tiny.setup(database_url)
    yield engine, sessions
    engine.dispose()


# --- the lease -------------------------------------------------------------------------


def test_a_second_relay_cannot_take_a_lease_that_has_not_expired(outbox):
    engine, _ = outbox
    first = RelayLease(engine, service="records", holder="a", seconds=LEASE_SECONDS).acquire()
    assert first is not None
    assert (
        RelayLease(engine, service="records", holder="b", seconds=LEASE_SECONDS).acquire() is None
    )


class _AcknowledgingProducer:
    """A transactional producer whose broker acknowledges everything, at offsets from 0."""

    def __init__(self) -> None:
        self.committed = 0

    def begin_transaction(self) -> None:
        pass

    def send(self, topic: str, **_message: object) -> Future:
        return Future().success(RecordMetadata(topic, 0, None, 0, 0, None, 0, 0, 0))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def commit_transaction(self) -> None:
        self.committed += 1


def fenced_relay(engine: Any, lease: RelayLease, term: Any) -> tuple[OutboxRelay, Any]:
    producer = _AcknowledgingProducer()
    return OutboxRelay(engine, producer, fence=TransactionalFence(lease, term, producer)), producer


def test_an_expired_lease_goes_to_the_standby_and_the_old_holder_marks_nothing_after(outbox):
    engine, sessions = outbox
    old_lease = RelayLease(engine, service="records", holder="a", seconds=0.2)
    old = old_lease.acquire()
    assert old is not None
    time.sleep(0.3)
    new = RelayLease(engine, service="records", holder="b", seconds=LEASE_SECONDS).acquire()
    assert new is not None and new.token > old.token
    assert new.transactional_id == old.transactional_id  # so Kafka fences the old producer
    assert not old_lease.renew(old)

    tiny.write(sessions, tiny.numbered_event(f"pat-{uuid.uuid4()}", 0))
    old.valid_until = time.monotonic() + 60  # as a holder paused past its lease believes
    relay, producer = fenced_relay(engine, old_lease, old)
    with pytest.raises(LeaseLost):
        relay.publish_pending()
    assert relay.pending_count() == 1  # not marked sent
    assert producer.committed == 0  # and its Kafka transaction not committed
    assert old.over.is_set()


def test_a_batch_whose_transaction_was_aborted_is_marked_unsent_again_by_the_next_holder(outbox):
    engine, sessions = outbox
    lease = RelayLease(engine, service="records", holder="a", seconds=LEASE_SECONDS)
    term = lease.acquire()
    assert term is not None
    tiny.write(sessions, *(tiny.numbered_event(f"pat-{uuid.uuid4()}", n) for n in range(3)))
    relay, _ = fenced_relay(engine, lease, term)
    assert relay.publish_pending() == 3
    tiny.write(sessions, tiny.numbered_event(f"pat-{uuid.uuid4()}", 3))  # not in the batch
    lease.release(term)

    successor = RelayLease(engine, service="records", holder="b", seconds=LEASE_SECONDS)
    next_term = successor.acquire()
    assert next_term is not None
    batch = successor.last_batch()
    assert batch is not None and (batch["last"] - batch["first"], batch["offset"]) == (2, 0)
    assert successor.unmark(next_term, batch) == 3
    assert relay.pending_count() == 4


def test_a_released_lease_is_taken_at_once(outbox):
    engine, _ = outbox
    holder = RelayLease(engine, service="records", holder="a", seconds=60)
    term = holder.acquire()
    assert term is not None
    holder.release(term)
    assert RelayLease(engine, service="records", holder="b", seconds=60).acquire() is not None


def test_of_two_relays_creating_the_lease_at_once_one_holds_it(outbox):
    engine, _ = outbox
    terms: list[Any] = []
    ready = threading.Barrier(2)

    def take(name: str) -> None:
        ready.wait()
        terms.append(RelayLease(engine, service="records", holder=name, seconds=60).acquire())

    threads = [threading.Thread(target=take, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(term is not None for term in terms) == 1


# --- relays in processes of their own ---------------------------------------------------


class Relay:
    """A leased relay in a process of its own, with its log."""

    def __init__(self, url: str, bootstrap: str, holder: str, log: Path, *extra: str) -> None:
        script = Path(__file__).with_name("relay_process.py")
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(script), url, bootstrap, holder, str(LEASE_SECONDS), *extra],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                stderr=out,
            )

    def says(self, words: str) -> bool:
        return words in self.log.read_text()

    def stopped(self) -> bool:
        """Whether the process is stopped by a signal (state T in /proc)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"


def lease_row(engine: Any) -> tuple[int, str] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT token, holder FROM relay_leases")).first()
    return (row[0], row[1]) if row else None


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> float:
    """Wait until `condition` holds; answer how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


def stop_all(*relays: Relay | None) -> None:
    processes = [relay.process for relay in relays if relay is not None]
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
    for process in processes:
        process.wait(20)


class Writer:
    """Writes numbered events of a few patients, one every few ms, while running."""

    def __init__(self, sessions: Any, patients: list[str]) -> None:
        self._sessions = sessions
        self.patients = patients
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write)

    def _write(self) -> None:
        while not self._stop.wait(0.005):
            patient = self.patients[self.written % len(self.patients)]
            tiny.write(self._sessions, tiny.numbered_event(patient, self.written))
            self.written += 1

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def assert_once_each_in_order(events: list[Any], written: int) -> None:
    versions = Counter(e.data["version"] for e in events)
    assert [v for v, n in versions.items() if n > 1] == []  # no duplicate on the log
    assert sorted(versions) == list(range(written))  # none lost
    for patient in {e.subject for e in events}:
        mine = [e.data["version"] for e in events if e.subject == patient]
        assert mine == sorted(mine)  # per-key order kept


def test_two_relays_publish_each_event_once_and_the_standby_takes_over_when_the_holder_dies(
    outbox, database_url, kafka_bootstrap, kafka_tap, tmp_path
):
    engine, sessions = outbox
    tap = kafka_tap(TOPIC_RECORDS)
    patients = [f"pat-{uuid.uuid4()}" for _ in range(5)]
    holder = Relay(database_url, kafka_bootstrap, "holder", tmp_path / "holder.log")
    standby = None
    try:
        wait_for(lambda: lease_row(engine) == (1, "holder"))
        standby = Relay(database_url, kafka_bootstrap, "standby", tmp_path / "standby.log")
        wait_for(lambda: standby.says("standing by"))
        with Writer(sessions, patients) as writer:
            time.sleep(1)
            assert lease_row(engine) == (1, "holder")  # one term so far: the standby waited
            holder.process.kill()
            killed = time.monotonic()
            written_before = writer.written
            took_lease = wait_for(lambda: lease_row(engine) == (2, "standby"))
            # Taken over once what was written after the kill is on the log.
            tap.events(
                1,
                where=lambda e: e.subject in patients and e.data["version"] >= written_before,
                timeout_seconds=30,
            )
            took_over = time.monotonic() - killed
            print(f"takeover: lease after {took_lease:.2f}s, publishing after {took_over:.2f}s")
            time.sleep(0.5)
        wait_for(lambda: OutboxRelay(engine, None).pending_count() == 0)
        events = tap.events(
            writer.written, where=lambda e: e.subject in patients, settle_seconds=1.0
        )
    finally:
        stop_all(holder, standby)

    assert_once_each_in_order(events, writer.written)
    # Within seconds (a generous bound: CI machines are shared; the figure is in the output).
    assert took_over < LEASE_SECONDS + 15


# Each database's own fencing statements are tested above without a broker: here each pause
# point runs once, to keep the time these processes take in CI down.
@pytest.mark.parametrize(
    ("database_url", "pause_at"),
    [("sqlite", "flush"), ("postgres", "commit")],
    indirect=["database_url"],
)
def test_a_holder_paused_past_its_lease_publishes_and_marks_nothing_after_it_resumes(
    outbox, database_url, kafka_bootstrap, kafka_tap, tmp_path, pause_at
):
    engine, sessions = outbox
    committed = kafka_tap(TOPIC_RECORDS)
    everything = KafkaTap(kafka_bootstrap, TOPIC_RECORDS, isolation_level="read_uncommitted")
    patients = [f"pat-{uuid.uuid4()}" for _ in range(3)]
    paused = f"pat-pause-{uuid.uuid4()}"
    holder = Relay(
        database_url,
        kafka_bootstrap,
        "holder",
        tmp_path / "holder.log",
        "--pause-at",
        pause_at,
        paused,
    )
    standby = None
    try:
        wait_for(lambda: lease_row(engine) == (1, "holder"))
        standby = Relay(database_url, kafka_bootstrap, "standby", tmp_path / "standby.log")
        wait_for(lambda: standby.says("standing by"))
        for n in range(10):
            tiny.write(sessions, tiny.numbered_event(patients[n % 3], n))
        tiny.write(sessions, tiny.numbered_event(paused, 10))
        wait_for(holder.stopped)
        # Resumed once the standby has taken the lease and fenced the holder's producer.
        wait_for(lambda: standby.says("publishing under token 2"))
        wait_for(lambda: OutboxRelay(engine, None).pending_count() == 0)

        holder.process.send_signal(signal.SIGCONT)
        for n in range(11, 21):
            tiny.write(sessions, tiny.numbered_event(patients[n % 3], n))
        wait_for(lambda: holder.says("standing by"))  # it noticed it lost the lease
        wait_for(lambda: OutboxRelay(engine, None).pending_count() == 0)
        subjects = {*patients, paused}
        events = committed.events(21, where=lambda e: e.subject in subjects, settle_seconds=1.0)
        raw = everything.events(where=lambda e: e.subject == paused, timeout_seconds=1.0)
    finally:
        everything.close()
        stop_all(holder, standby)

    assert_once_each_in_order(events, 21)
    # The paused holder's batch did reach the broker, in a transaction the takeover aborted.
    assert len(raw) == 2
    assert lease_row(engine) == (2, "standby")
