"""`unsigned_record` and `from_kafka` do what the cloudevents SDK's Kafka binding did, byte for
byte (`to_kafka` is `unsigned_record` plus the signature header: tests/unit/shared/
test_fact_signing.py).

The reference below is the SDK path events took until the codec (`shared.wire`) replaced it:
the SDK builds and parses the message, marshmallow loads and dumps the data. Hypothesis
draws events of every registered type, and messages bent in the ways a producer, a proxy or
an attacker may bend them; both paths must write the same bytes, and read the same event or
refuse the same message.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from shared.events import REGISTRY, Event, InvalidEvent, event_type, from_kafka, unsigned_record
from shared.wire import parse_time
from tests.unit.shared.event_strategies import MOMENTS, valid_data

# --- the reference: the SDK path, as shared/events.py had it -----------------------------

_CORE = {"id", "source", "type", "specversion", "time", "subject", "datacontenttype"}
_KNOWN_EXTENSIONS = {"actor", "traceparent", "partitionkey"}


def sdk_to_kafka(event: Event) -> tuple[str, bytes, list[tuple[str, bytes]], bytes]:
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": "1.0",
        "time": event.time,
        "subject": event.subject,
        "datacontenttype": "application/json",
        "actor": event.actor,
        "partitionkey": event.subject,
        **event.extensions,
    }
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    message = ce_kafka.to_binary_event(CloudEvent(attributes, event.data))
    key = message.key.encode() if isinstance(message.key, str) else message.key or b""
    return event.topic, key, list(message.headers.items()), message.value


def sdk_from_kafka(headers: Any, key: bytes | None, value: bytes) -> Event:
    header_map = dict(headers.items() if isinstance(headers, dict) else headers)
    try:
        ce = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(header_map, key, value))
    except Exception as err:
        raise InvalidEvent(f"not a CloudEvent in binary mode: {type(err).__name__}") from None
    attrs = ce.get_attributes()
    etype = event_type(str(attrs.get("type", "")))
    data = ce.get_data()
    if not isinstance(data, dict):
        raise InvalidEvent(f"{etype.name}: data is not a JSON object")
    time = attrs.get("time")
    if not isinstance(time, datetime) or not attrs.get("subject"):
        raise InvalidEvent(f"{etype.name}: time and subject are required")
    schema = etype.schema()
    try:
        valid = dict(schema.dump(schema.load(dict(data))))
    except ValidationError as err:
        raise InvalidEvent(f"invalid data for {etype.name}: {err.messages}") from None
    return Event(
        id=str(attrs["id"]),
        type=etype.name,
        source=str(attrs["source"]),
        subject=str(attrs["subject"]),
        time=time,
        actor=str(attrs.get("actor", "system")),
        data=valid,
        traceparent=attrs.get("traceparent"),
        extensions={
            k: str(v) for k, v in attrs.items() if k not in _CORE and k not in _KNOWN_EXTENSIONS
        },
    )


# --- what hypothesis draws ---------------------------------------------------------------

TYPES = sorted(REGISTRY.values(), key=lambda etype: etype.name)
EXTENSION_NAMES = st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)
# Names that are almost extension names: empty, upper case, punctuation, non-ASCII, a newline.
ODD_NAMES = st.text(alphabet="aZ9_-.é\n", min_size=1, max_size=4) | st.just("")


@st.composite
def events(draw: st.DrawFn) -> Event:
    """An event of any registered type with valid data."""
    etype = draw(st.sampled_from(TYPES))
    text = st.text(min_size=1, max_size=16)
    return Event(
        id=str(draw(st.uuids())),
        type=etype.name,
        source=draw(text),
        subject=draw(text),
        time=draw(MOMENTS.filter(lambda m: m.tzinfo is not None)),
        actor=draw(text),
        data=draw(valid_data(etype.schema())),
        traceparent=draw(st.none() | text),
        extensions=draw(
            st.dictionaries(
                EXTENSION_NAMES.filter(lambda n: n not in _CORE | _KNOWN_EXTENSIONS),
                st.text(max_size=12),
                max_size=2,
            )
        ),
    )


@st.composite
def bent_events(draw: st.DrawFn) -> Event:
    """An event with one attribute the binding may refuse: empty, naive, oddly named."""
    event = draw(events())
    how = draw(st.sampled_from(["id", "source", "subject", "actor", "time"] + ["extension"] * 3))
    if how == "time":
        return replace(event, time=event.time.replace(tzinfo=None))
    if how != "extension":
        return replace(event, **{how: draw(st.sampled_from(["", " ", "é"]))})
    name = draw(ODD_NAMES | st.sampled_from(sorted(_CORE | _KNOWN_EXTENSIONS | {"data"})))
    return replace(event, extensions={**event.extensions, name: draw(st.text(max_size=4))})


TIME_TEXTS = st.one_of(
    MOMENTS.map(lambda m: m.isoformat()),
    MOMENTS.map(lambda m: m.isoformat(timespec="milliseconds")),
    MOMENTS.map(lambda m: m.isoformat(timespec="seconds").replace("+00:00", "Z")),
    st.sampled_from(
        [
            "2026-12-02T05:41:42Z",
            "2026-12-02T05:41:42.123456z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T05:41:60Z",
            "2026-02-30T05:41:42Z",
            "20261202T054142Z",
            "2026-12-02 05:41:42+01:00",
            "2026-12-02",
            "2026-12-02T05:41:42.1234567Z",
            "",
        ]
    ),
    st.text(max_size=10),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json; charset=utf-8",
        "application/cloudevents+json",
        "text/json",
        "application/json\n",
        "text/plain",
        "application/xml",
        "",
    ]
)
HEADER_BYTES = st.text(max_size=10).map(str.encode) | st.binary(max_size=6)


@st.composite
def bent_headers(draw: st.DrawFn, headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    headers = list(headers)
    for _ in range(draw(st.integers(0, 3))):
        how = draw(
            st.sampled_from(["case", "drop", "time", "version", "content", "add", "odd", "twice"])
        )
        at = draw(st.integers(0, len(headers) - 1)) if headers else None
        if how == "case" and at is not None:
            name, value = headers[at]
            headers[at] = (draw(st.sampled_from([name.upper(), name.title()])), value)
        elif how == "drop" and at is not None:
            del headers[at]
        elif how == "time":
            headers.append(("ce_time", draw(TIME_TEXTS).encode()))
        elif how == "version":
            version = draw(st.sampled_from(["0.3", "2.0", "", "1.0"]))
            headers.append(("ce_specversion", version.encode()))
        elif how == "content":
            headers.append(("content-type", draw(CONTENT_TYPES).encode()))
        elif how == "add":
            name = draw(
                st.sampled_from(["ce_", "ce_data", "ce_Dataschema", "ce_schemaurl", "x-trace"])
                | EXTENSION_NAMES.map(lambda n: "ce_" + n)
                | st.text(max_size=8)
            )
            headers.append((name, draw(HEADER_BYTES)))
        elif how == "odd":
            headers.append(("ce_" + draw(ODD_NAMES), draw(HEADER_BYTES)))
        elif how == "twice" and at is not None:
            headers.append((headers[at][0], draw(HEADER_BYTES)))
    return headers


def bent_values(value: bytes) -> st.SearchStrategy[bytes]:
    data = json.loads(value)
    first = next(iter(data))
    return st.one_of(
        st.just(value),
        st.sampled_from([b"", b"null", b"[]", b'"text"', b"{}", b"{", b"\xef\xbb\xbf" + value]),
        st.binary(max_size=12),
        st.just(value.replace(b": ", b":", 3).replace(b", ", b",\n ")),
        st.just(json.dumps(data, ensure_ascii=False).encode()),
        st.sampled_from(
            ["NaN", "1e400", "2.0", "1.5", "18446744073709551616", '"\\ud800"', "true"]
        ).map(lambda raw: json.dumps({**data, first: "@"}).replace('"@"', raw).encode()),
    )


def outcome(read: Any, headers: Any, key: Any, value: Any) -> Event | str:
    try:
        return read(headers, key, value)
    except InvalidEvent:
        return "refused"


# --- the properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(event=events())
def test_an_event_is_written_as_the_sdk_wrote_it(event):
    record = unsigned_record(event)
    assert (record.topic, record.key, record.headers, record.value) == sdk_to_kafka(event)


@settings(max_examples=300, deadline=None)
@given(event=bent_events())
def test_an_event_the_sdk_refused_to_write_is_refused(event):
    try:
        expected = sdk_to_kafka(event)
    except Exception:
        expected = None
    try:
        record = unsigned_record(event)
        written = (record.topic, record.key, record.headers, record.value)
    except InvalidEvent:
        written = None
    assert written == expected


@settings(max_examples=200, deadline=None)
@given(event=events())
def test_a_message_written_is_read_back_as_the_sdk_read_it(event):
    record = unsigned_record(event)
    read = from_kafka(record.headers, record.key, record.value)
    assert read == sdk_from_kafka(record.headers, record.key, record.value)


@settings(max_examples=600, deadline=None)
@given(data=st.data(), event=events())
def test_a_bent_message_is_read_or_refused_as_the_sdk_did(data, event):
    record = unsigned_record(event)
    headers = data.draw(bent_headers(record.headers))
    if data.draw(st.booleans()):
        headers = dict(headers)
    key = data.draw(st.sampled_from([record.key, None, b"\xff\xfe", b""]))
    value = data.draw(bent_values(record.value))

    expected = outcome(sdk_from_kafka, headers, key, value)
    read = outcome(from_kafka, headers, key, value)

    names = {name.lower() for name in dict(headers) if isinstance(name, str)}
    if not {"ce_id", "ce_time"} <= names:
        # Where the SDK made an id or a time up, a fact without its own is refused.
        assert read == "refused"
    else:
        assert read == expected


@settings(max_examples=500, deadline=None)
@given(text=TIME_TEXTS)
def test_times_are_read_as_the_sdk_read_them(text):
    try:
        expected: datetime | str = isoparse(text)
    except (ValueError, OverflowError):
        expected = "refused"
    try:
        read: datetime | str = parse_time(text)
    except (ValueError, OverflowError):
        read = "refused"
    assert read == expected
    if isinstance(read, datetime) and isinstance(expected, datetime):
        assert read.utcoffset() == expected.utcoffset()


A_FACT = Event(
    id="0193a1b2-c3d4-7e5f-8a9b-000000000001",
    type="caretrail.patient.erased.v1",
    source="caretrail/records",
    subject="pat-1",
    time=datetime(2026, 12, 2, 5, 41, 42, 123456, tzinfo=UTC),
    actor="patient:pat-1",
    data={"patient": "pat-1", "erased_by": "patient:pat-1"},
)


@pytest.mark.parametrize(
    "header, value",
    [
        ("ce_time", b"2026-12-02T07:41:42.123456+02:00"),
        ("ce_time", b"2026-12-02T05:41:42+00:00"),
        ("ce_time", b"2026-12-02T24:00:00Z"),
        ("ce_time", b"2026-12-02T05:41:42"),
        ("CE_TIME", b"2026-12-02T05:41:42.5Z"),
        ("content-type", b"application/json; charset=utf-8"),
        ("Content-Type", b"text/plain"),
        ("ce_specversion", b"0.3"),
        ("ce_specversion", b"1.1"),
        ("ce_Trace_Id", b"abc"),
        ("ce_dataschema", b"https://example.org/schema"),
        ("ce_dataschema", b""),
        ("ce_subject", b""),
        ("x-origin", b"\xff"),
    ],
)
def test_a_message_another_producer_may_write_is_read_as_the_sdk_read_it(header, value):
    record = unsigned_record(A_FACT)
    headers = [(name, v) for name, v in record.headers if name.lower() != header.lower()]
    headers.append((header, value))

    read = outcome(from_kafka, headers, record.key, record.value)

    assert read == outcome(sdk_from_kafka, headers, record.key, record.value)
