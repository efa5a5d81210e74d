"""A compiled check answers what marshmallow's load + dump answers, or leaves it to marshmallow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validate

from shared.events import REGISTRY
from shared.fast_schema import compile_schema
from tests.unit.shared.event_strategies import JUNK, any_data, valid_data

SCHEMAS = sorted({etype.schema for etype in REGISTRY.values()}, key=lambda s: s.__name__)


def round_trip(schema: Schema, data: Any) -> dict[str, Any] | None:
    """What events did with every event's data before: load and dump, or refuse (`None`)."""
    try:
        return dict(schema.dump(schema.load(data)))
    except ValidationError:
        return None


def in_order(data: Any) -> str:
    """The data with its keys in their order, as they go on the wire."""
    return json.dumps(data, default=str)


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda s: s.__name__)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_check_answers_as_marshmallow_does_or_defers_to_it(schema_class, data):
    schema = schema_class()
    value = data.draw(any_data(schema))

    checked = compile_schema(schema)(value)

    if checked is not None:
        expected = round_trip(schema, value)
        assert expected is not None, "the check accepted data marshmallow refuses"
        assert checked == expected
        assert in_order(checked) == in_order(expected)


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda s: s.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_check_decides_every_valid_data_itself(schema_class, data):
    schema = schema_class()
    value = data.draw(valid_data(schema))

    checked = compile_schema(schema)(value)

    assert checked is not None
    assert in_order(checked) == in_order(round_trip(schema, value))


def test_datetimes_come_out_in_marshmallows_iso_form():
    schema = REGISTRY["caretrail.consent.granted.v1"].schema()
    data = {
        "consent_id": "c1",
        "patient": "pat-1",
        "version": 1,
        "grantee": {"type": "organization", "id": "org-b"},
        "actions": ["read"],
        "categories": ["*"],
        "purposes": ["TREAT"],
        "period": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-31T10:00:00.5+02:00"},
    }

    checked = compile_schema(schema)(data)

    assert checked is not None
    assert checked["period"] == {
        "start": "2026-12-01T10:00:00+00:00",
        "end": "2026-12-31T10:00:00.500000+02:00",
    }
    assert checked["security_labels"] == []  # the load default, as marshmallow fills it in


class Bounded(Schema):
    low_open = fields.Integer(
        required=True, validate=validate.Range(min=0, max=10, min_inclusive=False)
    )
    high_open = fields.Integer(
        required=True, validate=validate.Range(min=0, max=10, max_inclusive=False)
    )


@settings(deadline=None)
@given(
    low_open=st.integers(-2, 12) | JUNK,
    high_open=st.integers(-2, 12) | JUNK,
)
def test_open_and_closed_range_bounds_are_kept(low_open, high_open):
    data = {"low_open": low_open, "high_open": high_open}
    checked = compile_schema(Bounded())(data)
    expected = round_trip(Bounded(), data)
    assert checked is None or checked == expected
    if type(low_open) is int and type(high_open) is int:
        assert checked == expected


class Unusual(Schema):
    email = fields.Email(required=True)
    renamed = fields.String(data_key="other")


def test_a_schema_it_cannot_reproduce_is_always_left_to_marshmallow():
    check = compile_schema(Unusual())
    assert check({"email": "a@example.org", "other": "x"}) is None
    assert check({"email": "not an address"}) is None
