"""The outbox against a real broker: committed facts arrive once, rolled-back ones never."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from caretrail.kafka_server import LocalBroker, free_port
from shared.broker import make_producer
from shared.events import TOPIC_RECORDS
from shared.outbox import OutboxRelay
from tests.integration.shared import tiny_service as tiny


@pytest.fixture
def relay(database_url, kafka_bootstrap):
    engine, sessions = tiny.setup(database_url)
    producer = make_producer(kafka_bootstrap)
    yield OutboxRelay(engine, producer), sessions
    producer.close()
    engine.dispose()


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
