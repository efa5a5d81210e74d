"""The audit HTTP API's schemas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from marshmallow import Schema, fields, validate

from services.audit.domain import REVIEW_DECISIONS
from shared.break_glass import reason_display


class _Paging(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


class TrailFilters(Schema):
    patient = fields.String(validate=validate.Length(min=1, max=200))
    actor = fields.String(validate=validate.Length(min=1, max=200))
    type = fields.String(validate=validate.Length(min=1, max=120))
    outcome = fields.String(validate=validate.Length(min=1, max=20))
    since = fields.AwareDateTime(format="iso", default_timezone=UTC)
    until = fields.AwareDateTime(format="iso", default_timezone=UTC)
    org = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "organization id"}
    )
    record = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "entries naming this record id"},
    )


class TrailArgs(TrailFilters, _Paging):
    pass


class DisclosureArgs(_Paging):
    since = fields.AwareDateTime(format="iso", default_timezone=UTC)


class BreakGlassArgs(_Paging):
    reviewed = fields.Boolean()


_BTG_REASON = "break-glass: the practitioner's reason code (free text in facts of before codes)"
_BTG_WORDS = "the break-glass reason code in words (null for free text or no reason)"
_BTG_NOTE = (
    "break-glass: the practitioner's note, sealed with the patient's data key; compliance "
    "staff open it at records' POST /patients/{pid}/break-glass-notes/open"
)


def _reason_display(entry: Mapping[str, Any]) -> str | None:
    return reason_display(entry.get("break_glass_reason"))


class EntryRead(Schema):
    id = fields.String(attribute="event_id", metadata={"description": "the event's id"})
    type = fields.String()
    time = fields.String()
    actor = fields.String()
    role = fields.String(allow_none=True)
    org = fields.String(allow_none=True)
    patient = fields.String()
    action = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    purpose = fields.String(allow_none=True)
    record_ids = fields.List(fields.String())
    categories = fields.List(fields.String())
    consent_ids = fields.List(fields.String())
    break_glass_reason = fields.String(allow_none=True, metadata={"description": _BTG_REASON})
    break_glass_reason_display = fields.Function(
        _reason_display, allow_none=True, metadata={"type": "string", "description": _BTG_WORDS}
    )
    break_glass_note = fields.String(allow_none=True, metadata={"description": _BTG_NOTE})
    reason = fields.String(
        allow_none=True, metadata={"description": "why access was refused, as records said it"}
    )
    source = fields.String()
    trace_id = fields.String(allow_none=True)
    topic = fields.String()
    partition = fields.Integer()
    offset = fields.Integer()
    seq = fields.Integer()
    prev_hash = fields.String()
    hash = fields.String()


class EntryPage(Schema):
    items = fields.List(fields.Nested(EntryRead))
    next_cursor = fields.String(allow_none=True)


class TallyRead(Schema):
    total = fields.Integer()
    permit = fields.Integer()
    deny = fields.Integer()


class DayTally(TallyRead):
    day = fields.String(metadata={"description": "UTC day, YYYY-MM-DD"})


class OrgTally(TallyRead):
    org = fields.String(allow_none=True)


class TrailSummary(Schema):
    total = fields.Integer()
    permit = fields.Integer()
    deny = fields.Integer()
    by_day = fields.List(fields.Nested(DayTally), metadata={"description": "oldest first"})
    by_org = fields.List(fields.Nested(OrgTally), metadata={"description": "busiest first"})


class WhoAmI(Schema):
    actor = fields.String()
    role = fields.String()
    sub = fields.String()
    org = fields.String(allow_none=True)
    patient = fields.String(allow_none=True)
    name = fields.String(allow_none=True, metadata={"description": "from the directory"})
    org_name = fields.String(allow_none=True, metadata={"description": "from the directory"})


class DirectoryRead(Schema):
    actors = fields.Dict(keys=fields.String(), values=fields.String())
    organizations = fields.Dict(keys=fields.String(), values=fields.String())


class DisclosureRead(Schema):
    entry_id = fields.String(attribute="event_id")
    time = fields.String()
    type = fields.String()
    actor = fields.String()
    role = fields.String(allow_none=True)
    org = fields.String(allow_none=True)
    action = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    record_ids = fields.List(fields.String())
    categories = fields.List(fields.String())
    purpose = fields.String(allow_none=True)
    consent_ids = fields.List(fields.String())
    break_glass_reason = fields.String(allow_none=True, metadata={"description": _BTG_REASON})
    break_glass_reason_display = fields.Function(
        _reason_display, allow_none=True, metadata={"type": "string", "description": _BTG_WORDS}
    )
    reason = fields.String(
        allow_none=True, metadata={"description": "why access was refused, as records said it"}
    )


class DisclosurePage(Schema):
    patient = fields.String()
    since = fields.String()
    items = fields.List(fields.Nested(DisclosureRead))
    next_cursor = fields.String(allow_none=True)


class ReviewCreate(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(REVIEW_DECISIONS))
    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "why; a review without one is refused (422)"},
    )


class ReviewRead(Schema):
    entry_id = fields.String()
    patient = fields.String()
    decision = fields.String()
    note = fields.String(allow_none=True)
    reviewer = fields.String()
    reviewed_at = fields.DateTime(format="iso")


class BreakGlassRead(EntryRead):
    review = fields.Nested(ReviewRead, allow_none=True)


class BreakGlassPage(Schema):
    items = fields.List(fields.Nested(BreakGlassRead))
    next_cursor = fields.String(allow_none=True)


class ChainHeadRead(Schema):
    topic = fields.String()
    partition = fields.Integer()
    seq = fields.Integer()
    hash = fields.String()


class CheckpointRead(Schema):
    created_at = fields.String()
    heads = fields.List(fields.Nested(ChainHeadRead))
    signature = fields.String(
        metadata={
            "description": "base64 Ed25519 signature of the RFC 8785 JSON of {created_at, heads}"
        }
    )
    algorithm = fields.String()
    public_key = fields.String(metadata={"description": "PEM (SubjectPublicKeyInfo)"})


class ChainReportRead(Schema):
    topic = fields.String()
    partition = fields.Integer()
    entries = fields.Integer()
    head_hash = fields.String()
    ok = fields.Boolean()
    first_bad_seq = fields.Integer(allow_none=True)
    problem = fields.String(allow_none=True)


class CheckpointStatus(Schema):
    created_at = fields.String()
    signature_ok = fields.Boolean()


class VerifyReport(Schema):
    ok = fields.Boolean()
    checkpoint = fields.Nested(CheckpointStatus, allow_none=True)
    partitions = fields.List(fields.Nested(ChainReportRead))


class VerificationRead(Schema):
    verified_at = fields.String(metadata={"description": "when the worker verified (UTC)"})
    ok = fields.Boolean()
    chains = fields.Integer()
    entries = fields.Integer()
    problems = fields.List(fields.String(), metadata={"description": "one per broken chain"})
    signature = fields.String(
        metadata={"description": "base64 Ed25519 signature of the RFC 8785 JSON of the rest"}
    )
    signature_ok = fields.Boolean()
    algorithm = fields.String()


class VerificationArgs(Schema):
    limit = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))


class VerificationList(Schema):
    items = fields.List(fields.Nested(VerificationRead), metadata={"description": "newest first"})
