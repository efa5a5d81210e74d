"""Schemas of the records HTTP API (marshmallow 4)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import EXCLUDE, Schema, fields, validate

from shared.break_glass import CODES as BREAK_GLASS_CODES
from shared.break_glass import MAX_NOTE_LENGTH, REASONS
from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS

BREAK_GLASS_REASON_HELP = (
    "emergency access (practitioners only), why: "
    + "; ".join(f"`{r.code}` {r.display}" for r in REASONS)
    + ". The code is in the access fact, in clear; `other` needs X-Break-Glass-Note"
)
BREAK_GLASS_NOTE_HELP = (
    "optional free text with X-Break-Glass-Reason, sealed with the patient's data key in the "
    "access fact (never in clear; unreadable once the patient is erased)"
)


class RecordRead(Schema):
    id = fields.String(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["current", "entered-in-error"]})
    source = fields.String(required=True, metadata={"enum": ["ehr", "phr"]})
    author = fields.String(required=True, metadata={"description": "actor: <role>:<subject>"})
    author_org = fields.String(allow_none=True)
    category = fields.String(required=True, metadata={"enum": list(CATEGORIES)})
    security = fields.List(fields.String(metadata={"enum": list(SECURITY_LABELS)}))
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
    resource = fields.Dict(metadata={"description": "the FHIR R4 resource"})


class RecordPage(Schema):
    items = fields.List(fields.Nested(RecordRead), required=True)
    next_cursor = fields.String(allow_none=True)


class Paging(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(min=1, max=200))


class RecordSearch(Paging):
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    code = fields.String(
        validate=validate.Length(min=1, max=300),
        metadata={"description": "a FHIR token: `code` or `system|code`"},
    )
    since = fields.AwareDateTime(
        format="iso",
        default_timezone=UTC,
        metadata={"description": "records written at or after this time (RFC 3339)"},
    )


class ReminderSource(Schema):
    title = fields.String(required=True)
    url = fields.String(required=True)


class ReminderRead(Schema):
    rule_id = fields.String(required=True)
    title = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": ["immunization", "screening"]})
    status = fields.String(required=True, metadata={"enum": ["due", "overdue", "done", "snoozed"]})
    due_date = fields.Date(required=True)
    snoozed_until = fields.Date(allow_none=True)
    evidence = fields.List(
        fields.String(), required=True, metadata={"description": "ids of the records it rests on"}
    )
    source = fields.Nested(ReminderSource, required=True)


class ReminderList(Schema):
    rule_set_version = fields.String(required=True)
    reminders = fields.List(fields.Nested(ReminderRead), required=True)


class Snooze(Schema):
    until = fields.Date(required=True, metadata={"description": "a day after today, within a year"})


class TrendQuery(Schema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=3, max=300),
        metadata={
            "description": "a FHIR token with its system: `system|code`",
            # The code of the documented Observation example (HbA1c): "Try it out" draws it.
            "example": "http://loinc.org|4548-4",
        },
    )
    since = fields.AwareDateTime(format="iso", default_timezone=UTC)
    until = fields.AwareDateTime(format="iso", default_timezone=UTC)


class TrendCode(Schema):
    system = fields.String(required=True)
    code = fields.String(required=True)
    display = fields.String(allow_none=True)


class TrendPoint(Schema):
    time = fields.DateTime(format="iso", required=True)
    value = fields.Float(required=True)
    unit = fields.String(required=True)
    source = fields.String(required=True, metadata={"enum": ["EHR", "PHR"]})
    record_id = fields.String(required=True)
    normalised = fields.Boolean(
        required=True, metadata={"description": "false: UCUM cannot convert it to the unit"}
    )


class TrendSummary(Schema):
    min = fields.Float(required=True)
    max = fields.Float(required=True)
    last = fields.Float(required=True)
    direction = fields.String(required=True, metadata={"enum": ["rising", "falling", "steady"]})


class TrendRead(Schema):
    code = fields.Nested(TrendCode, required=True)
    unit = fields.String(allow_none=True)
    points = fields.List(fields.Nested(TrendPoint), required=True)
    summary = fields.Nested(TrendSummary, allow_none=True)


class ReadHeaders(Schema):
    """The headers of a read, documented; `reader_from_headers` checks them."""

    class Meta:
        unknown = EXCLUDE

    purpose = fields.String(
        data_key="X-Purpose-Of-Use", metadata={"enum": list(PURPOSES), "default": "TREAT"}
    )
    break_glass_reason = fields.String(
        data_key="X-Break-Glass-Reason",
        metadata={"enum": list(BREAK_GLASS_CODES), "description": BREAK_GLASS_REASON_HELP},
    )
    break_glass_note = fields.String(
        data_key="X-Break-Glass-Note",
        metadata={
            "minLength": 1,
            "maxLength": MAX_NOTE_LENGTH,
            "description": BREAK_GLASS_NOTE_HELP,
        },
    )


class BreakGlassNoteOpen(Schema):
    note = fields.String(
        required=True,
        validate=validate.Length(min=1, max=4096),
        metadata={
            "description": "a sealed note, as the access fact and the audit entry carry it "
            "(`break_glass_note`)"
        },
    )


class BreakGlassNoteRead(Schema):
    note = fields.String(required=True, metadata={"description": "the practitioner's text"})
