"""Hypothesis strategies for event data, read off each type's marshmallow schema.

`valid_data(schema)` draws data the schema accepts, in every form a caller may give
(datetimes as objects or ISO strings, optional fields present or not, big integers);
`any_data(schema)` draws that and data it refuses (wrong types, missing and unknown keys,
nulls, choices and ranges broken), for proving a faster path decides as marshmallow does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30)), None]
)
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 1, 0, 0, 1), max_value=datetime(9999, 12, 30), timezones=ZONES
)

# Values of every JSON (and some non-JSON) kind, for fields that should refuse them.
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.tuples(st.text(max_size=4)),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
    MOMENTS,
    st.dates(),
    st.sampled_from(["2024-02-30T00:00:00", "2024-01-01T24:00:00", "yesterday", ""]),
)


def _iso_text(moment: datetime) -> st.SearchStrategy[str]:
    text = moment.isoformat()
    forms = [text, moment.isoformat(timespec="seconds"), moment.isoformat(timespec="milliseconds")]
    if text.endswith("+00:00"):
        forms.append(text[:-6] + "Z")
    return st.sampled_from(forms)


def valid_value(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values `field` accepts."""
    values = _valid_non_null(field)
    return st.none() | values if field.allow_none else values


def _valid_non_null(field: fields.Field) -> st.SearchStrategy[Any]:
    one_of = [v for v in field.validators if isinstance(v, validate.OneOf)]
    if one_of:
        return st.sampled_from(list(one_of[0].choices))
    if isinstance(field, fields.String):
        lengths = [v for v in field.validators if isinstance(v, validate.Length)]
        shortest = (lengths[0].min or 0) if lengths else 0
        return st.text(min_size=shortest, max_size=max(12, shortest))
    if isinstance(field, fields.Integer):
        bounds = [v for v in field.validators if isinstance(v, validate.Range)]
        low = bounds[0].min if bounds else None
        return st.integers(min_value=low) | st.integers(min_value=2**63, max_value=2**70)
    if isinstance(field, fields.DateTime):
        return MOMENTS | MOMENTS.flatmap(_iso_text)
    if isinstance(field, fields.Date):
        # As validated data holds a day: its ISO text (the binding has no form for a date).
        return st.dates().map(lambda day: day.isoformat())
    if isinstance(field, fields.List):
        return st.lists(valid_value(field.inner), max_size=4)
    if isinstance(field, fields.Nested):
        return valid_data(field.schema)
    raise NotImplementedError(type(field).__name__)


def valid_data(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Data `schema` accepts: every required field, optional ones or not."""
    required = {name: valid_value(f) for name, f in schema.fields.items() if f.required}
    optional = {name: valid_value(f) for name, f in schema.fields.items() if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def any_data(schema: Schema) -> st.SearchStrategy[Any]:
    """Data `schema` accepts, and data it refuses in one or more ways."""
    return st.one_of(
        valid_data(schema),
        broken_data(schema),
        JUNK,
    )


@st.composite
def broken_data(draw: st.DrawFn, schema: Schema) -> dict[str, Any]:
    """Valid data with one to three things wrong (some of which marshmallow may still accept)."""
    names = sorted(schema.fields)
    broken = dict(draw(valid_data(schema)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["junk", "drop", "unknown", "nested"]))
        name = draw(st.sampled_from(names))
        field = schema.fields[name]
        if how == "junk":
            broken[name] = draw(JUNK)
        elif how == "drop":
            broken.pop(name, None)
        elif how == "unknown":
            broken[draw(st.text(max_size=6))] = draw(JUNK)
        elif isinstance(field, fields.Nested):
            broken[name] = draw(any_data(field.schema))
        elif isinstance(field, fields.List):
            broken[name] = draw(st.lists(valid_value(field.inner) | JUNK, min_size=1, max_size=3))
    return broken
