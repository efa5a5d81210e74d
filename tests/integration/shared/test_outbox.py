"""The outbox against a real broker: committed facts arrive once, rolled-back ones never."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import NotLeaderForPartitionError
from kafka.future import Future
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import event

from caretrail.kafka_server import LocalBroker, free_port
from shared.broker import make_producer
from shared.db import UnitOfWork
from shared.events import TOPIC_RECORDS
from shared.outbox import OutboxRelay, PublishFailed
from tests.integration.shared import tiny_service as tiny


@pytest.fixture
def outbox(database_url, kafka_bootstrap):
    """An outbox's engine and sessions, and a producer to the test broker."""
    engine, sessions = tiny.setup(database_url)
    producer = make_producer(kafka_bootstrap)
    yield engine, sessions, producer
    producer.close()
    engine.dispose()


@pytest.fixture
def relay(outbox):
    engine, sessions, producer = outbox
    return OutboxRelay(engine, producer), sessions


def test_a_committed_event_reaches_kafka_once_with_its_envelope_and_trace(relay, kafka_tap):
    relay_, sessions = relay
    tap = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    event = tiny.numbered_event(patient, 1)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /patients/x/records") as span:
        tiny.write(sessions, event)
        trace_id = format(span.get_span_context().trace_id, "032x")

    assert relay_.publish_pending() == 1
    assert relay_.publish_pending() == 0  # marked sent: not published again

    received = tap.events(1, where=lambda e: e.subject == patient, settle_seconds=1.0)
    assert [e.id for e in received] == [event.id]
    message = next(m for m in tap.messages if m.key == patient.encode())
    headers = dict(message.headers)
    for attribute in ("id", "source", "type", "time", "subject", "actor", "specversion"):
        assert f"ce_{attribute}" in headers
    assert headers["ce_traceparent"].decode().split("-")[1] == trace_id


def test_a_rolled_back_transaction_publishes_nothing(relay, kafka_tap):
    relay_, sessions = relay
    tap = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    tiny.write(sessions, tiny.numbered_event(patient, 1), commit=False)

    assert relay_.publish_pending() == 0
    assert tap.events(where=lambda e: e.subject == patient, timeout_seconds=1.5) == []


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory):
    """A broker of this module's own, since these tests stop it."""
    broker = LocalBroker(
        data_dir=Path(tmp_path_factory.mktemp("broker")),
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    yield broker
    broker.stop()


def test_events_written_while_the_broker_is_down_arrive_once_in_order(own_broker, database_url):
    from tests.support.kafka_tap import KafkaTap

    engine, sessions = tiny.setup(database_url)
    producer = make_producer(own_broker.bootstrap)
    relay = OutboxRelay(engine, producer, batch_size=30)
    patients = [f"pat-{uuid.uuid4()}" for _ in range(3)]
    tap = KafkaTap(own_broker.bootstrap, TOPIC_RECORDS)

    own_broker.stop()
    for n in range(100):
        tiny.write(sessions, tiny.numbered_event(patients[n % 3], n))
    stop = threading.Event()
    relay_thread = threading.Thread(
        target=relay.run, args=(stop,), kwargs={"max_backoff_seconds": 1}
    )
    relay_thread.start()
    try:
        stop.wait(3)  # the relay tries, fails and backs off while the broker is away
        assert relay.pending_count() == 100
        own_broker.start()

        events = tap.events(
            100, where=lambda e: e.subject in patients, timeout_seconds=60, settle_seconds=2
        )
    finally:
        stop.set()
        relay_thread.join()
        tap.close()
        producer.close()
        engine.dispose()

    assert sorted(e.data["version"] for e in events) == list(range(100))  # each once
    for patient in patients:
        versions = [e.data["version"] for e in events if e.subject == patient]
        assert versions == sorted(versions)  # per-key order kept
    assert relay.pending_count() == 0


class _RefusingProducer:
    """A producer whose broker refuses one message of each batch and acknowledges the rest."""

    def __init__(self, refused: int) -> None:
        self._refused = refused
        self._futures: list[Future] = []

    def send(self, topic: str, **_message: object) -> Future:
        self._futures.append(Future())
        return self._futures[-1]

    def flush(self, timeout: float | None = None) -> None:
        for n, future in enumerate(self._futures):
            if n == self._refused:
                future.failure(NotLeaderForPartitionError("refused"))
            else:
                future.success(None)
        self._futures.clear()


def test_a_batch_with_a_refused_message_is_not_marked_sent_and_goes_again(outbox, kafka_tap):
    engine, sessions, producer = outbox
    relay_ = OutboxRelay(engine, producer)
    tap = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    tiny.write(sessions, *(tiny.numbered_event(patient, n) for n in range(5)))

    with pytest.raises(PublishFailed, match="NotLeaderForPartitionError"):
        OutboxRelay(engine, _RefusingProducer(refused=2)).publish_pending()
    assert relay_.pending_count() == 5

    assert relay_.publish_pending() == 5
    received = tap.events(5, where=lambda e: e.subject == patient)
    assert [e.data["version"] for e in received] == list(range(5))


class _CommittingWhileInFlight:
    """The real producer, with a commit to the outbox while the first batch is in flight."""

    def __init__(self, producer: Any, commit: Callable[[], None]) -> None:
        self._producer = producer
        self._commit: Callable[[], None] | None = commit

    def send(self, topic: str, **message: Any) -> Any:
        return self._producer.send(topic, **message)

    def flush(self, timeout: float | None = None) -> None:
        if self._commit is not None:
            self._commit()
            self._commit = None
        self._producer.flush(timeout=timeout)


def test_a_row_committed_while_a_batch_is_in_flight_goes_with_the_next_batch(outbox, kafka_tap):
    engine, sessions, producer = outbox
    tap = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    tiny.write(sessions, tiny.numbered_event(patient, 0))
    in_flight = _CommittingWhileInFlight(
        producer, lambda: tiny.write(sessions, tiny.numbered_event(patient, 1))
    )
    relay_ = OutboxRelay(engine, in_flight)

    assert relay_.publish_pending() == 1
    assert relay_.pending_count() == 1  # the later row is not marked with the batch
    assert relay_.publish_pending() == 1
    received = tap.events(2, where=lambda e: e.subject == patient)
    assert [e.data["version"] for e in received] == [0, 1]


# SQLite has one writer at a time: its seqs commit in order.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_row_whose_seq_commits_out_of_order_is_not_marked_with_the_batch_around_it(
    outbox, kafka_tap, database_url
):
    engine, sessions, producer = outbox
    tap = kafka_tap(TOPIC_RECORDS)
    patients = [f"pat-{uuid.uuid4()}" for _ in range(3)]
    tiny.write(sessions, tiny.numbered_event(patients[0], 0))
    with UnitOfWork(sessions) as late:
        late.publish(tiny.numbered_event(patients[1], 1))  # its seq is drawn now, uncommitted
        tiny.write(sessions, tiny.numbered_event(patients[2], 2))
        relay_ = OutboxRelay(engine, _CommittingWhileInFlight(producer, late.commit))

        assert relay_.publish_pending() == 2
    assert relay_.pending_count() == 1  # the late row is still to go
    assert relay_.publish_pending() == 1
    received = tap.events(3, where=lambda e: e.subject in patients)
    assert sorted(e.data["version"] for e in received) == [0, 1, 2]


@contextmanager
def running(relay_: OutboxRelay) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=relay_.run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        assert not thread.is_alive()  # it notices `stop` even in a long wait


def seconds_until_published(relay_: OutboxRelay, sessions: Any, timeout: float = 10.0) -> float:
    """Write one event and answer how long the running relay took to publish it."""
    started = time.monotonic()
    tiny.write(sessions, tiny.numbered_event(f"pat-{uuid.uuid4()}", 0))
    while relay_.pending_count():
        assert time.monotonic() - started < timeout
        time.sleep(0.002)
    return time.monotonic() - started


def test_an_idle_relay_publishes_an_appended_row_within_a_moment(relay):
    relay_, sessions = relay
    with running(relay_):
        time.sleep(1)  # long idle: the relay looks at most every `idle_seconds` (20 ms)
        took = sorted(seconds_until_published(relay_, sessions) for _ in range(5))
    assert took[2] < 0.1


# On PostgreSQL NOTIFY wakes the relay, and it still looks every idle_seconds.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_idle_relay_on_sqlite_reads_nothing_from_the_outbox_until_a_commit(outbox, database_url):
    engine, sessions, producer = outbox
    relay_ = OutboxRelay(engine, producer)
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM outbox" in statement:
            statements.append(statement)

    with running(relay_):
        time.sleep(0.3)
        statements.clear()
        time.sleep(1)
        idle = list(statements)
        assert seconds_until_published(relay_, sessions) < 1
    assert idle == []


# SQLite has no notifications: the relay watches the file instead.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_notification_wakes_an_idle_relay_long_before_its_next_look(outbox, database_url):
    engine, sessions, producer = outbox
    relay_ = OutboxRelay(engine, producer, idle_seconds=5)
    with running(relay_):
        # Its looks back off 1, 2, 4 ... 1024 ms: 2.2 s in, the next is about 2 s away.
        time.sleep(2.2)
        assert seconds_until_published(relay_, sessions) < 1
