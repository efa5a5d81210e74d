"""The CloudEvents 1.0 envelope of every caretrail fact, and the registry of event types.

Events travel in Kafka *binary content mode* (attributes in `ce_*` headers, JSON data in the
value), written and read by `shared.wire` exactly as the `cloudevents` SDK's Kafka binding
does. Every type is registered here with the topic it lives on and a marshmallow schema for
its `data`; an unknown type or data that does not fit its schema is refused with
`InvalidEvent`, on the way out and in. The schemas are compiled (`shared.fast_schema`) for
the data they surely accept; marshmallow itself decides the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from marshmallow import Schema, ValidationError, fields, validate
from uuid6 import uuid7

from shared import fact_signing, wire
from shared.fast_schema import Check, compile_schema

SPEC_PREFIX = "caretrail."
SPEC_SUFFIX = ".v1"

TOPIC_RECORDS = "caretrail.records.v1"
TOPIC_ACCESS = "caretrail.access.v1"
TOPIC_CONSENT = "caretrail.consent.v1"
TOPIC_NOTIFY = "caretrail.notify.v1"
TOPIC_AUDIT = "caretrail.audit.v1"
TOPIC_DLQ = "caretrail.dlq.v1"

# Topics of facts (the DLQ holds failed deliveries, not facts).
FACT_TOPICS = (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT, TOPIC_NOTIFY, TOPIC_AUDIT)
ALL_TOPICS = (*FACT_TOPICS, TOPIC_DLQ)

PURPOSES = ("TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT")
SECURITY_LABELS = ("PSY", "SUD", "HIV", "ETH", "GDIS", "SEX")
CATEGORIES = (
    "Patient",
    "Observation",
    "Condition",
    "MedicationStatement",
    "AllergyIntolerance",
    "Immunization",
    "DiagnosticReport",
    "DocumentReference",
    "Procedure",
    "Encounter",
)
ROLES = ("patient", "practitioner", "compliance", "admin")


class InvalidEvent(ValueError):
    """An event whose type is unknown or whose data does not fit its type's schema."""


# --- data schemas, one per event type --------------------------------------------------


class _Data(Schema):
    class Meta:
        ordered = True


class Sealed(_Data):
    """Clinical content encrypted with the patient's data key (AES-256-GCM)."""

    key_id = fields.String(required=True)
    nonce = fields.String(required=True)  # base64
    ciphertext = fields.String(required=True)  # base64


class RecordChanged(_Data):
    patient = fields.String(required=True)
    record_id = fields.String(required=True)
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    source = fields.String(required=True, validate=validate.OneOf(("ehr", "phr")))
    author = fields.String(required=True)
    author_org = fields.String(load_default=None, allow_none=True)
    content = fields.Nested(Sealed, required=True)  # the resource, its security labels too
    changed_at = fields.DateTime(required=True, format="iso")


class RecordEnteredInError(_Data):
    patient = fields.String(required=True)
    record_id = fields.String(required=True)
    version = fields.Integer(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    author = fields.String(required=True)
    author_org = fields.String(load_default=None, allow_none=True)


class PatientErased(_Data):
    patient = fields.String(required=True)
    erased_by = fields.String(required=True)


class ReminderDue(_Data):
    """A preventive-care reminder fell due: which rule of which rule set, and when. What the
    rule is about (its title, codes, condition) stays in records."""

    patient = fields.String(required=True)
    rule_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    due_date = fields.Date(required=True)
    rule_set_version = fields.String(required=True, validate=validate.Length(min=1, max=100))


class Access(_Data):
    """A read request and its outcome: ids, categories, purpose, justification. No content."""

    patient = fields.String(required=True)
    actor = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    org = fields.String(load_default=None, allow_none=True)
    action = fields.String(
        required=True,
        # `open-break-glass-note`: compliance staff read a break-glass note (records' domain).
        validate=validate.OneOf(("read", "search", "vread", "export", "open-break-glass-note")),
    )
    record_ids = fields.List(fields.String(), required=True)
    categories = fields.List(fields.String(), required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    consent_ids = fields.List(fields.String(), load_default=list)
    # A code of `shared.break_glass.CODES` since reasons were coded; facts written before
    # carry free text here, and a replay must still read them, so any text is taken.
    break_glass_reason = fields.String(load_default=None, allow_none=True)
    # The practitioner's note, sealed with the patient's data key (`Sealed` in a compact
    # text form only records opens): unreadable anywhere once the patient is erased.
    break_glass_note = fields.String(load_default=None, allow_none=True)
    outcome = fields.String(required=True, validate=validate.OneOf(("permit", "deny")))
    reason = fields.String(load_default=None, allow_none=True)


class Grantee(_Data):
    type = fields.String(required=True, validate=validate.OneOf(("practitioner", "organization")))
    id = fields.String(required=True)


class Period(_Data):
    start = fields.DateTime(required=True, format="iso")
    end = fields.DateTime(required=True, format="iso")


class ConsentGranted(_Data):
    consent_id = fields.String(required=True)
    patient = fields.String(required=True)
    version = fields.Integer(required=True)
    grantee = fields.Nested(Grantee, required=True)
    actions = fields.List(fields.String(validate=validate.OneOf(("read",))), required=True)
    categories = fields.List(
        fields.String(validate=validate.OneOf((*CATEGORIES, "*"))), required=True
    )
    security_labels = fields.List(
        fields.String(validate=validate.OneOf(SECURITY_LABELS)), load_default=list
    )
    purposes = fields.List(fields.String(validate=validate.OneOf(PURPOSES)), required=True)
    period = fields.Nested(Period, required=True)


class ConsentEnded(_Data):
    consent_id = fields.String(required=True)
    patient = fields.String(required=True)
    version = fields.Integer(required=True)


class NotificationOutcome(_Data):
    notification_id = fields.String(required=True)
    patient = fields.String(required=True)
    kind = fields.String(required=True)
    channel = fields.String(required=True)
    attempts = fields.Integer(required=True)
    error = fields.String(load_default=None, allow_none=True)


class BreakGlassReviewed(_Data):
    entry_id = fields.String(required=True)
    event_id = fields.String(required=True)
    patient = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(("justified", "unjustified")))
    note = fields.String(load_default=None, allow_none=True)


@dataclass(frozen=True)
class EventType:
    name: str  # e.g. "caretrail.record.accessed.v1"
    topic: str
    schema: type[Schema]


def _t(short: str, topic: str, schema: type[Schema]) -> EventType:
    return EventType(f"{SPEC_PREFIX}{short}{SPEC_SUFFIX}", topic, schema)


REGISTRY: dict[str, EventType] = {
    t.name: t
    for t in (
        _t("record.created", TOPIC_RECORDS, RecordChanged),
        _t("record.amended", TOPIC_RECORDS, RecordChanged),
        _t("record.entered-in-error", TOPIC_RECORDS, RecordEnteredInError),
        _t("patient.erased", TOPIC_RECORDS, PatientErased),
        _t("reminder.due", TOPIC_RECORDS, ReminderDue),
        _t("record.accessed", TOPIC_ACCESS, Access),
        _t("access.denied", TOPIC_ACCESS, Access),
        _t("record.exported", TOPIC_ACCESS, Access),
        _t("consent.granted", TOPIC_CONSENT, ConsentGranted),
        _t("consent.revoked", TOPIC_CONSENT, ConsentEnded),
        _t("consent.expired", TOPIC_CONSENT, ConsentEnded),
        _t("notification.delivered", TOPIC_NOTIFY, NotificationOutcome),
        _t("notification.failed", TOPIC_NOTIFY, NotificationOutcome),
        _t("break-glass.reviewed", TOPIC_AUDIT, BreakGlassReviewed),
    )
}


def type_name(short: str) -> str:
    """`record.accessed` -> `caretrail.record.accessed.v1`."""
    return f"{SPEC_PREFIX}{short}{SPEC_SUFFIX}"


def event_type(name: str) -> EventType:
    """The registered type called `name` (full or short form), or `InvalidEvent`."""
    full = name if name.startswith(SPEC_PREFIX) else type_name(name)
    try:
        return REGISTRY[full]
    except KeyError:
        raise InvalidEvent(f"unknown event type {name!r}") from None


@functools.cache
def _schema(etype: EventType) -> Schema:
    # One instance per type: building a marshmallow schema costs more than a load and a dump.
    return etype.schema()


@functools.cache
def _fast_check(etype: EventType) -> Check:
    return compile_schema(_schema(etype))


def _validated(etype: EventType, data: Mapping[str, Any]) -> dict[str, Any]:
    checked = _fast_check(etype)(data)
    return checked if checked is not None else _round_trip(etype, data)


def _round_trip(etype: EventType, data: Mapping[str, Any]) -> dict[str, Any]:
    schema = _schema(etype)
    try:
        # Round trip through the schema: refuses unknown fields, wrong types, missing ones,
        # and gives JSON-ready values (datetimes as ISO strings).
        return dict(schema.dump(schema.load(dict(data))))
    except ValidationError as err:
        raise InvalidEvent(f"invalid data for {etype.name}: {err.messages}") from None


@dataclass(frozen=True)
class Event:
    """One fact, as its CloudEvents attributes and its JSON data."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    actor: str
    data: dict[str, Any]
    traceparent: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    # Set on facts read from Kafka: their `ce_signature` and the SHA-256 of their value. They
    # describe the message, not the fact: two copies of one fact are equal whatever they say.
    signature: str | None = field(default=None, compare=False)
    data_digest: str | None = field(default=None, compare=False)

    @property
    def topic(self) -> str:
        return event_type(self.type).topic

    @property
    def short_type(self) -> str:
        return self.type.removeprefix(SPEC_PREFIX).removesuffix(SPEC_SUFFIX)


def new_event(
    short_type: str,
    *,
    source_service: str,
    subject: str,
    actor: str,
    data: Mapping[str, Any],
    traceparent: str | None = None,
    time: datetime | None = None,
) -> Event:
    """A new fact with a UUIDv7 id, validated against its type's schema."""
    etype = event_type(short_type)
    return Event(
        id=str(uuid7()),
        type=etype.name,
        source=f"caretrail/{source_service}",
        subject=subject,
        time=time or datetime.now(UTC),
        actor=actor,
        data=_validated(etype, data),
        traceparent=traceparent,
    )


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on the wire: topic, key, headers and value."""

    topic: str
    key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes


def to_kafka(event: Event) -> KafkaRecord:
    """The event in Kafka binary content mode, keyed by patient id, signed with its source's
    key (`shared.fact_signing`): every message a caretrail process writes."""
    record = unsigned_record(event)
    text = signed_text_of(event, fact_signing.data_digest(record.value))
    signature = fact_signing.sign(fact_signing.signing_key(event.source), text)
    record.headers.append((SIGNATURE_HEADER, signature.encode()))
    return record


def unsigned_record(event: Event) -> KafkaRecord:
    """The event in Kafka binary content mode as the CloudEvents SDK's binding writes it."""
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": "1.0",
        "time": event.time,
        "subject": event.subject,
        "datacontenttype": wire.JSON_CONTENT_TYPE,
        "actor": event.actor,
        "partitionkey": event.subject,
        **event.extensions,
    }
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    try:
        key, headers, value = wire.write_binary(attributes, event.data)
    except wire.NotACloudEvent as err:
        raise InvalidEvent(f"{event.type}: {err}") from None
    return KafkaRecord(event.topic, key, headers, value)


SIGNATURE_HEADER = wire.CE_PREFIX + fact_signing.SIGNATURE_ATTRIBUTE


def signed_text_of(event: Event, digest: str) -> bytes:
    """What the signature of `event` covers, its value's digest given."""
    return fact_signing.signed_text(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=event.subject,
        time=event.time,
        actor=event.actor,
        digest=digest,
    )


def authenticity_problem(event: Event, keys: fact_signing.FactKeys) -> str | None:
    """Why a fact read from Kafka is not authentic for its source (`None` when it is)."""
    return keys.problem(
        signature=event.signature,
        source=event.source,
        text=signed_text_of(event, event.data_digest or ""),
    )


_CORE = {"id", "source", "type", "specversion", "time", "subject", "datacontenttype"}
_KNOWN_EXTENSIONS = {"actor", "traceparent", "partitionkey", fact_signing.SIGNATURE_ATTRIBUTE}


def from_kafka(
    headers: list[tuple[str, bytes]] | Mapping[str, bytes], key: bytes | None, value: bytes
) -> Event:
    """Parse and validate a message read from Kafka; `InvalidEvent` when it is not a fact."""
    try:
        attrs, body = wire.read_binary(headers, key, value)
    except wire.NotACloudEvent as err:
        raise InvalidEvent(f"not a CloudEvent in binary mode: {err}") from None
    etype = event_type(str(attrs["type"]))
    if not attrs.get("subject"):
        raise InvalidEvent(f"{etype.name}: time and subject are required")
    return Event(
        id=str(attrs["id"]),
        type=etype.name,
        source=str(attrs["source"]),
        subject=str(attrs["subject"]),
        time=attrs["time"],
        actor=str(attrs.get("actor", "system")),
        data=_data_of(etype, body),
        traceparent=attrs.get("traceparent"),
        extensions={
            k: str(v) for k, v in attrs.items() if k not in _CORE and k not in _KNOWN_EXTENSIONS
        },
        signature=attrs.get(fact_signing.SIGNATURE_ATTRIBUTE),
        data_digest=fact_signing.data_digest(value or b""),
    )


def _data_of(etype: EventType, body: bytes | None) -> dict[str, Any]:
    """The validated data of a message's JSON body.

    orjson and the compiled check decide together when they can: the check accepts only the
    exact types of the schema (no floats), and on such documents orjson reads what `json`
    reads (it reads integers beyond 64 bits as floats, and refuses NaN and lone surrogates,
    which `json` accepts). Anything else is read as the SDK read it and given to marshmallow.
    """
    if body is not None:
        try:
            checked = _fast_check(etype)(orjson.loads(body))
        except orjson.JSONDecodeError:
            checked = None
        if checked is not None:
            return checked
    data = wire.json_data(body)
    if not isinstance(data, dict):
        raise InvalidEvent(f"{etype.name}: data is not a JSON object")
    return _round_trip(etype, data)
