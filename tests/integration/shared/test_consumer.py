"""The consumer loop against a real broker: once-only effects, crashes, poison messages."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from kafka import KafkaProducer
from sqlalchemy.exc import OperationalError

from shared.broker import make_consumer, make_producer
from shared.events import TOPIC_DLQ, TOPIC_RECORDS, to_kafka
from shared.fact_signing import FactKeys
from shared.inbox import BatchHandler, ConsumerLoop, Origin, handle_once
from shared.kafka_access import client_options
from tests.integration.shared import tiny_service as tiny
from tests.support.kafka_tap import start_group_at_end

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def wait_for(condition, timeout_seconds=30.0):
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def produce(bootstrap: str, *events) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), **client_options())
    for event in events:
        record = to_kafka(event)
        producer.send(record.topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()
    producer.close()


@pytest.fixture
def service(database_url):
    engine, sessions = tiny.setup(database_url)
    yield database_url, sessions
    engine.dispose()


def test_the_same_event_handled_twice_takes_effect_once(service):
    _, sessions = service
    event = tiny.numbered_event(f"pat-{uuid.uuid4()}", 1)
    origin = Origin(TOPIC_RECORDS, 0, 7)

    assert handle_once(sessions, "tiny", tiny.apply, event, origin) is True
    assert handle_once(sessions, "tiny", tiny.apply, event, origin) is False
    assert tiny.applied_count(sessions, event.id) == 1


def test_an_event_delivered_twice_by_kafka_takes_effect_once(service, kafka_bootstrap):
    _, sessions = service
    group = f"tiny-{uuid.uuid4()}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    event = tiny.numbered_event(f"pat-{uuid.uuid4()}", 1)
    produce(kafka_bootstrap, event, event)
    later = tiny.numbered_event(event.subject, 2)
    produce(kafka_bootstrap, later)

    loop = running_loop(kafka_bootstrap, group, sessions)
    try:
        wait_for(lambda: tiny.applied_count(sessions, later.id) == 1)
    finally:
        loop.stop.set()
    assert tiny.applied_count(sessions, event.id) == 1


def running_loop(bootstrap, group, sessions, handlers=None) -> ConsumerLoop:
    loop = ConsumerLoop(
        consumer=group,
        kafka_consumer=make_consumer(bootstrap, group),
        producer=make_producer(bootstrap),
        sessions=sessions,
        handlers=handlers or tiny.HANDLERS,
        topics=[TOPIC_RECORDS],
        fact_keys=FactKeys.from_directory(),
        max_tries=3,
        first_backoff_seconds=0.01,
    )
    threading.Thread(target=loop.run, daemon=True).start()
    return loop


def test_a_consumer_killed_between_its_db_commit_and_its_offset_commit_applies_once(
    service, kafka_bootstrap, tmp_path
):
    url, sessions = service
    group = f"tiny-{uuid.uuid4()}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    event = tiny.numbered_event(f"pat-{uuid.uuid4()}", 1)
    produce(kafka_bootstrap, event)
    marker = tmp_path / "died"
    command = [
        sys.executable,
        "-m",
        "tests.integration.shared.consumer_process",
        url,
        kafka_bootstrap,
        group,
    ]

    crashed = subprocess.run([*command, "--die-after-db-commit", str(marker)], cwd=ROOT, timeout=60)
    assert crashed.returncode == -9 and marker.exists()
    assert tiny.applied_count(sessions, event.id) == 1  # committed before the kill

    restarted = subprocess.Popen(command, cwd=ROOT)
    try:
        # The offset was never committed, so Kafka hands the event out again...
        later = tiny.numbered_event(event.subject, 2)
        produce(kafka_bootstrap, later)
        wait_for(lambda: tiny.applied_count(sessions, later.id) == 1, 60)
    finally:
        restarted.terminate()
        restarted.wait(30)
    # ...and the inbox turned the second delivery into a no-op.
    assert tiny.applied_count(sessions, event.id) == 1
    assert restarted.returncode == 0  # SIGTERM is a graceful stop


def test_a_poison_message_goes_to_the_dlq_and_the_loop_goes_on(service, kafka_bootstrap, kafka_tap):
    _, sessions = service
    group = f"tiny-{uuid.uuid4()}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    dlq = kafka_tap(TOPIC_DLQ)
    patient = f"pat-{uuid.uuid4()}"
    failing = tiny.numbered_event(patient, 666)
    after = tiny.numbered_event(patient, 2)

    def apply_unless_666(session, event, origin):
        if event.data["version"] == 666:
            raise ValueError("this handler cannot take it")
        tiny.apply(session, event, origin)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), **client_options())
    producer.send(TOPIC_RECORDS, key=patient.encode(), value=b"\x00 not an event")
    producer.flush()
    produce(kafka_bootstrap, failing, after)

    loop = running_loop(
        kafka_bootstrap, group, sessions, {"caretrail.record.entered-in-error.v1": apply_unless_666}
    )
    try:
        wait_for(lambda: tiny.applied_count(sessions, after.id) == 1)
        dead = dlq.read(lambda ms: len([m for m in ms if m.key == patient.encode()]) >= 2)
    finally:
        loop.stop.set()
    dead = [m for m in dead if m.key == patient.encode()]
    assert [m.value for m in dead][0] == b"\x00 not an event"
    headers = [dict(m.headers) for m in dead]
    assert headers[0]["dlq_topic"] == TOPIC_RECORDS.encode()
    assert b"InvalidEvent" in headers[0]["dlq_error"]
    assert headers[1]["ce_id"] == failing.id.encode()
    assert headers[1]["dlq_tries"] == b"3"
    assert b"ValueError" in headers[1]["dlq_error"]
    assert int(headers[1]["dlq_offset"]) > int(headers[0]["dlq_offset"])
    assert tiny.applied_count(sessions, failing.id) == 0


def test_a_handler_breaking_a_constraint_fails_rather_than_passing_for_a_duplicate(service):
    from sqlalchemy.exc import IntegrityError

    _, sessions = service
    event = tiny.numbered_event(f"pat-{uuid.uuid4()}", 1)

    def insert_the_same_row_twice(session, event, origin):
        tiny.apply(session, event, origin)
        session.execute(tiny.applied.insert().values(n=1, event_id="x", patient="p", version=0))
        session.execute(tiny.applied.insert().values(n=1, event_id="x", patient="p", version=0))

    with pytest.raises(IntegrityError):
        handle_once(sessions, "tiny", insert_the_same_row_twice, event, Origin(TOPIC_RECORDS, 0, 1))
    assert tiny.applied_count(sessions, event.id) == 0


def test_events_of_one_batch_take_effect_together_and_a_repeat_within_it_once(service):
    from shared.inbox import handle_in_one_transaction

    _, sessions = service
    patient = f"pat-{uuid.uuid4()}"
    first, second = tiny.numbered_event(patient, 1), tiny.numbered_event(patient, 2)
    deliveries = [
        (first, Origin(TOPIC_RECORDS, 0, 1), tiny.apply),
        (second, Origin(TOPIC_RECORDS, 0, 2), tiny.apply),
        (first, Origin(TOPIC_RECORDS, 0, 3), tiny.apply),  # a producer retry's second copy
    ]
    assert handle_in_one_transaction(sessions, "tiny", deliveries) == 2
    assert handle_in_one_transaction(sessions, "tiny", deliveries) == 0
    assert tiny.applied_versions(sessions, patient) == [1, 2]


class RecordingBatchHandler(BatchHandler):
    """Applies each call's events in order and remembers how many each call got; a batch
    holding version 666 fails as a whole."""

    def __init__(self) -> None:
        super().__init__(self._apply_all)
        self.calls: list[int] = []

    def _apply_all(self, session, facts) -> None:
        self.calls.append(len(facts))
        if any(event.data["version"] == 666 for event, _ in facts):
            raise ValueError("this handler cannot take it")
        for event, origin in facts:
            tiny.apply(session, event, origin)


def test_a_batch_handler_gets_a_batchs_new_events_in_one_call_and_a_redelivery_is_a_no_op(
    service,
):
    from shared.inbox import handle_in_one_transaction

    _, sessions = service
    handler = RecordingBatchHandler()
    patient = f"pat-{uuid.uuid4()}"
    first, second = tiny.numbered_event(patient, 1), tiny.numbered_event(patient, 2)
    deliveries = [
        (first, Origin(TOPIC_RECORDS, 0, 1), handler),
        (first, Origin(TOPIC_RECORDS, 0, 2), handler),  # a producer retry's second copy
        (second, Origin(TOPIC_RECORDS, 0, 3), handler),
    ]

    assert handle_in_one_transaction(sessions, "tiny", deliveries) == 2
    assert handle_in_one_transaction(sessions, "tiny", deliveries) == 0  # redelivered
    assert handler.calls == [2]
    assert tiny.applied_versions(sessions, patient) == [1, 2]


def test_a_poison_event_in_a_batch_is_dead_lettered_alone(service, kafka_bootstrap, kafka_tap):
    _, sessions = service
    group = f"tiny-{uuid.uuid4()}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    dlq = kafka_tap(TOPIC_DLQ)
    patient = f"pat-{uuid.uuid4()}"
    before, failing, after = (tiny.numbered_event(patient, n) for n in (1, 666, 2))
    produce(kafka_bootstrap, before, failing, after)
    handler = RecordingBatchHandler()

    loop = running_loop(
        kafka_bootstrap, group, sessions, {"caretrail.record.entered-in-error.v1": handler}
    )
    try:
        wait_for(lambda: tiny.applied_count(sessions, after.id) == 1)
        dead = dlq.read(lambda ms: any(m.key == patient.encode() for m in ms))
    finally:
        loop.stop.set()
    [dead_letter] = [dict(m.headers) for m in dead if m.key == patient.encode()]
    assert dead_letter["ce_id"] == failing.id.encode()
    assert dead_letter["dlq_tries"] == b"3" and b"ValueError" in dead_letter["dlq_error"]
    assert tiny.applied_versions(sessions, patient) == [1, 2]


def test_a_handler_whose_database_is_away_is_tried_until_it_is_back_never_dead_lettered(
    service, kafka_bootstrap, kafka_tap
):
    _, sessions = service
    group = f"tiny-{uuid.uuid4()}"
    start_group_at_end(kafka_bootstrap, group, TOPIC_RECORDS)
    dlq = kafka_tap(TOPIC_DLQ)
    patient = f"pat-{uuid.uuid4()}"
    event = tiny.numbered_event(patient, 1)
    refusals = []

    def away_for_a_while(session, event, origin):
        # More refusals than the loop's tries (3): a restarting PostgreSQL says so for seconds.
        if len(refusals) < 6:
            refusals.append(1)
            raise OperationalError("SELECT 1", {}, Exception("the database system is starting up"))
        tiny.apply(session, event, origin)

    produce(kafka_bootstrap, event)
    loop = running_loop(
        kafka_bootstrap, group, sessions, {"caretrail.record.entered-in-error.v1": away_for_a_while}
    )
    try:
        wait_for(lambda: tiny.applied_count(sessions, event.id) == 1)
    finally:
        loop.stop.set()
    assert len(refusals) == 6
    assert not [m for m in dlq.read(lambda _: False, 2.0) if m.key == patient.encode()]
