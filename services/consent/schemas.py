"""Marshmallow schemas of the consent HTTP API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.consent.domain import FHIR_ID, NOT_A_FHIR_ID, STATUSES
from shared.events import CATEGORIES, PURPOSES, SECURITY_LABELS

ACTIONS = ("read",)
GRANTEE_TYPES = ("practitioner", "organization")


def _codes(choices: tuple[str, ...], **kwargs: object) -> fields.List:
    return fields.List(fields.String(validate=validate.OneOf(choices)), **kwargs)  # type: ignore[arg-type]


class GranteeSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(GRANTEE_TYPES))
    id = fields.String(required=True, validate=validate.Regexp(FHIR_ID, error=NOT_A_FHIR_ID))


class PeriodCreate(Schema):
    start = fields.AwareDateTime(
        format="iso", load_default=None, metadata={"description": "from now on when omitted"}
    )
    end = fields.AwareDateTime(format="iso", required=True)


class ConsentCreate(Schema):
    grantee = fields.Nested(GranteeSchema, required=True)
    actions = _codes(ACTIONS, required=True, validate=validate.Length(min=1))
    categories = _codes(
        (*CATEGORIES, "*"),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": 'resource types, or ["*"] for every one'},
    )
    security_labels = _codes(
        SECURITY_LABELS,
        load_default=list,
        metadata={"description": "sensitive data is shared only when its label is named"},
    )
    purposes = _codes(PURPOSES, required=True, validate=validate.Length(min=1))
    period = fields.Nested(PeriodCreate, required=True)


class PeriodRead(Schema):
    start = fields.DateTime(format="iso")
    end = fields.DateTime(format="iso")


class ConsentRead(Schema):
    id = fields.String()
    patient = fields.String()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(STATUSES))
    grantee = fields.Nested(GranteeSchema)
    actions = fields.List(fields.String())
    categories = fields.List(fields.String())
    security_labels = fields.List(fields.String())
    purposes = fields.List(fields.String())
    period = fields.Nested(PeriodRead)
    granted_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")


class ConsentQuery(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String()


class ConsentPage(Schema):
    items = fields.List(fields.Nested(ConsentRead))
    next_cursor = fields.String(allow_none=True)


class ConsentFact(Schema):
    """One event of a consent's history, as it went to Kafka."""

    id = fields.String()
    type = fields.String()
    time = fields.DateTime(format="iso")
    actor = fields.String()
    data = fields.Dict()


class ConsentHistory(Schema):
    items = fields.List(fields.Nested(ConsentFact))
    next_cursor = fields.String(allow_none=True)


class Asker(Schema):
    practitioner = fields.String(required=True, validate=validate.Length(min=1, max=64))
    org = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))


class AccessQuestion(Schema):
    patient = fields.String(required=True, validate=validate.Length(min=1, max=64))
    grantee = fields.Nested(Asker, required=True)
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    security_labels = _codes(SECURITY_LABELS, load_default=list)
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))


class AccessAnswer(Schema):
    decision = fields.String(validate=validate.OneOf(("permit", "deny")))
    consents = fields.List(
        fields.String(), metadata={"description": "ids of the consents that permit"}
    )
    reason = fields.String(allow_none=True)


# Shown in Swagger UI and sent by tests/integration/test_api_examples.py: they must work.
GRANT_EXAMPLE = {
    "grantee": {"type": "organization", "id": "org-b"},
    "actions": ["read"],
    "categories": ["Observation"],
    "security_labels": [],
    "purposes": ["TREAT"],
    "period": {"start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z"},
}
QUESTION_EXAMPLE = {
    "patient": "pat-alice",
    "grantee": {"practitioner": "dr-kim", "org": "org-b"},
    "action": "read",
    "category": "Observation",
    "security_labels": [],
    "purpose": "TREAT",
}
