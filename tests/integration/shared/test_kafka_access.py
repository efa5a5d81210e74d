"""The broker knows who writes and reads: each service its own topics, nobody else anything."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from shared.broker import make_consumer, make_producer
from shared.events import ALL_TOPICS, TOPIC_DLQ
from shared.kafka_access import (
    READS,
    SERVICES,
    WRITES,
    act_as,
    client_options,
    relay_transactions,
)
from tests.support.kafka_tap import write_one


@pytest.fixture
def as_service(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make this process's clients a service's principal until the test ends."""

    def become(service: str) -> None:
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            monkeypatch.setenv(name, os.environ[name])  # restored after the test
        act_as(service)

    return become


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_its_own_topics_and_the_dlq_only(kafka_bootstrap, as_service, service):
    as_service(service)
    for topic in (*WRITES[service], TOPIC_DLQ):
        write_one(kafka_bootstrap, topic)
    for topic in set(ALL_TOPICS) - {*WRITES[service], TOPIC_DLQ}:
        with pytest.raises(TopicAuthorizationFailedError):
            write_one(kafka_bootstrap, topic)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_only_what_it_consumes_and_its_own_topics(
    kafka_bootstrap, as_service, service
):
    as_service(service)
    allowed = {*READS[service], *WRITES[service]}
    group = f"{service}-access-test-{uuid.uuid4().hex[:6]}"
    for topic in ALL_TOPICS:
        consumer = make_consumer(kafka_bootstrap, group, consumer_timeout_ms=3000)
        try:
            consumer.assign([TopicPartition(topic, 0)])
            if topic in allowed:
                consumer.poll(timeout_ms=2000)
            else:
                with pytest.raises(TopicAuthorizationFailedError):
                    consumer.poll(timeout_ms=5000)
        finally:
            consumer.close()


def test_a_service_cannot_take_another_services_relay_transactions(kafka_bootstrap, as_service):
    as_service("notify")
    own = make_producer(kafka_bootstrap, transactional_id=f"{relay_transactions('notify')}x")
    own.init_transactions()
    own.close(timeout=5)
    # Taking records' id would fence records' relay mid-batch.
    other = make_producer(kafka_bootstrap, transactional_id=f"{relay_transactions('records')}x")
    try:
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            other.init_transactions()
    finally:
        other.close(timeout=5)


def test_a_client_without_credentials_or_with_wrong_ones_gets_nothing(kafka_bootstrap):
    servers = kafka_bootstrap.split(",")
    with pytest.raises(KafkaError):  # plaintext against TLS: no broker ever answers it
        KafkaProducer(bootstrap_servers=servers, bootstrap_timeout_ms=5000).send(
            WRITES["records"][0], b"{}"
        ).get(timeout=5)
    wrong = {**client_options(), "sasl_plain_username": "records", "sasl_plain_password": "x"}
    with pytest.raises(KafkaError):
        KafkaConsumer(bootstrap_servers=servers, bootstrap_timeout_ms=5000, **wrong).topics()
