import uuid

import pytest

from shared.events import (
    REGISTRY,
    TOPIC_ACCESS,
    InvalidEvent,
    from_kafka,
    new_event,
    to_kafka,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def an_access_event(**overrides):
    data = {
        "patient": "pat-1",
        "actor": "dr-lee",
        "role": "practitioner",
        "org": "org-a",
        "action": "read",
        "record_ids": ["r1"],
        "categories": ["Observation"],
        "purpose": "TREAT",
        "consent_ids": ["c1"],
        "outcome": "permit",
    }
    data.update(overrides)
    return new_event(
        "record.accessed",
        source_service="records",
        subject="pat-1",
        actor="practitioner:dr-lee",
        data=data,
        traceparent=TRACEPARENT,
    )


def test_an_event_travels_in_binary_mode_with_every_attribute_of_the_design():
    record = to_kafka(an_access_event())
    headers = dict(record.headers)

    assert record.topic == TOPIC_ACCESS
    assert record.key == b"pat-1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"caretrail.record.accessed.v1"
    assert headers["ce_source"] == b"caretrail/records"
    assert headers["ce_subject"] == b"pat-1"
    assert headers["ce_actor"] == b"practitioner:dr-lee"
    assert headers["ce_traceparent"] == TRACEPARENT.encode()
    assert headers["ce_partitionkey"] == b"pat-1"
    assert headers["ce_time"].endswith(b"Z")
    assert headers["content-type"] == b"application/json"
    assert b'"outcome": "permit"' in record.value


def test_event_ids_are_uuid_version_7():
    event = an_access_event()
    assert uuid.UUID(event.id).version == 7


def test_an_event_read_back_equals_the_event_written():
    event = an_access_event()
    record = to_kafka(event)
    assert from_kafka(record.headers, record.key, record.value) == event


def test_an_unknown_type_is_refused_on_the_way_out():
    with pytest.raises(InvalidEvent, match="unknown event type"):
        new_event("record.teleported", source_service="x", subject="p", actor="system", data={})


def test_data_that_does_not_fit_its_schema_is_refused_on_the_way_out():
    with pytest.raises(InvalidEvent, match="outcome"):
        an_access_event(outcome="maybe")


def test_data_with_an_unknown_field_is_refused():
    with pytest.raises(InvalidEvent, match="diagnosis"):
        an_access_event(diagnosis="something clinical")


def test_a_message_of_an_unknown_type_is_refused_on_the_way_in():
    record = to_kafka(an_access_event())
    headers = [(k, b"caretrail.unknown.v1" if k == "ce_type" else v) for k, v in record.headers]
    with pytest.raises(InvalidEvent, match="unknown event type"):
        from_kafka(headers, record.key, record.value)


def test_a_message_that_is_not_a_cloudevent_is_refused_on_the_way_in():
    with pytest.raises(InvalidEvent):
        from_kafka([], b"k", b"not json at all")


@pytest.mark.parametrize("missing", ["ce_id", "ce_time"])
def test_a_message_without_its_own_id_or_time_is_not_a_fact(missing):
    # A made-up id would let a redelivery take effect twice.
    record = to_kafka(an_access_event())
    headers = [(k, v) for k, v in record.headers if k != missing]
    with pytest.raises(InvalidEvent, match="ce_id and ce_time"):
        from_kafka(headers, record.key, record.value)


def test_invalid_data_is_refused_on_the_way_in():
    record = to_kafka(an_access_event())
    with pytest.raises(InvalidEvent, match="invalid data"):
        from_kafka(record.headers, record.key, b'{"patient": 42}')


def test_every_registered_type_lives_on_a_caretrail_topic():
    for name, etype in REGISTRY.items():
        assert name.startswith("caretrail.") and name.endswith(".v1")
        assert etype.topic.startswith("caretrail.") and etype.topic != "caretrail.dlq.v1"
