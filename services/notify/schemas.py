"""The HTTP API's marshmallow schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.notify.domain import CHANNELS, DELIVERY_MODES, IMMEDIATE, KINDS


class NotificationQuery(Schema):
    unread = fields.Boolean(load_default=False)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))


class DeliveryRead(Schema):
    channel = fields.String()
    state = fields.String()
    attempts = fields.Integer()


class NotificationRead(Schema):
    id = fields.String()
    kind = fields.String()
    title = fields.String()
    body = fields.String()
    urgent = fields.Boolean()
    details = fields.Dict()
    occurred_at = fields.DateTime(format="iso")
    created_at = fields.DateTime(format="iso")
    read_at = fields.DateTime(format="iso", allow_none=True)
    deliveries = fields.List(fields.Nested(DeliveryRead))


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationRead))
    next_cursor = fields.String(allow_none=True)


class KindPreferenceSchema(Schema):
    channels = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)),
        required=True,
        validate=validate.Length(max=len(CHANNELS)),
    )
    delivery = fields.String(load_default=IMMEDIATE, validate=validate.OneOf(DELIVERY_MODES))


class PreferencesWrite(Schema):
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=320))
    kinds = fields.Dict(
        keys=fields.String(validate=validate.OneOf(KINDS)),
        values=fields.Nested(KindPreferenceSchema),
        load_default=dict,
    )


class PreferencesRead(Schema):
    email = fields.String(allow_none=True)
    kinds = fields.Dict(keys=fields.String(), values=fields.Nested(KindPreferenceSchema))


class WebhookCreate(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    secret = fields.String(load_default=None, validate=validate.Length(max=200))


class WebhookRead(Schema):
    id = fields.String()
    url = fields.String()
    created_at = fields.DateTime(format="iso")


class WebhookCreated(WebhookRead):
    secret = fields.String()


class WebhookList(Schema):
    items = fields.List(fields.Nested(WebhookRead))


# Shown in Swagger UI and sent by tests/integration/test_api_examples.py: they must work.
WEBHOOK_EXAMPLE = {"url": "https://hooks.example.org/caretrail"}
PREFERENCES_EXAMPLE = {
    "email": "alice@example.org",
    "kinds": {
        "record-accessed": {"channels": ["inbox", "email"], "delivery": "daily_digest"},
        "break-glass": {"channels": ["inbox", "email"], "delivery": "immediate"},
    },
}
