"""Schemas of the records HTTP API (marshmallow 4)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import EXCLUDE, Schema, fields, validate

from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS


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


class ReadHeaders(Schema):
    """The headers of a read, documented; `reader_from_headers` checks them."""

    class Meta:
        unknown = EXCLUDE

    purpose = fields.String(
        data_key="X-Purpose-Of-Use", metadata={"enum": list(PURPOSES), "default": "TREAT"}
    )
    break_glass_reason = fields.String(
        data_key="X-Break-Glass-Reason",
        metadata={
            "maxLength": 500,
            "description": "emergency access (practitioners only); flagged in the access event",
        },
    )
