"""A marshmallow schema compiled into a plain check of the data it surely accepts.

Every event's data is validated by a marshmallow load + dump round trip (on the way out and
on the way in: Kafka is not trusted). That round trip costs far more than the event itself.
`compile_schema` reads a schema's fields once and returns a check that, for data made of the
exact types the schema expects (`str`, `int`, `list`, `dict`, `datetime`, `date`, `None`), answers
what the round trip answers: the same dict, in the same order. Whenever it cannot be sure
(another type, an unknown key, a value a validator refuses, a field kind it does not know) it
answers `None`, and the caller asks marshmallow, which decides and words the refusal.
tests/unit/shared/test_fast_schema.py proves the agreement on valid and invalid data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from marshmallow import RAISE, Schema, fields, validate
from marshmallow.utils import missing

Check = Callable[[Any], "dict[str, Any] | None"]
_Convert = Callable[[Any], Any]


class _Undecided(Exception):
    """The compiled check cannot vouch for this value; marshmallow will decide."""


class Unsupported(Exception):
    """A schema feature the compiled check does not reproduce (its check then always defers)."""


def compile_schema(schema: Schema) -> Check:
    """A check of `schema`'s round trip: its output, or `None` when marshmallow must decide."""
    try:
        convert = _object_converter(schema)
    except Unsupported:
        return lambda data: None

    def check(data: Any) -> dict[str, Any] | None:
        try:
            return convert(data)
        except _Undecided:
            return None

    return check


def _object_converter(schema: Schema) -> _Convert:
    if schema.unknown != RAISE or schema.many or any(schema._hooks.values()):
        raise Unsupported(f"{type(schema).__name__}: options or hooks")
    plan = tuple(_field_plan(name, field) for name, field in schema.fields.items())
    names = frozenset(schema.fields)

    def convert(data: Any) -> dict[str, Any]:
        # Unknown keys are refused by marshmallow; let it say which.
        if type(data) is not dict or not names.issuperset(data):
            raise _Undecided
        out: dict[str, Any] = {}
        for name, required, default, value_of in plan:
            value = data.get(name, missing)
            if value is missing:
                if required:
                    raise _Undecided
                if default is not missing:
                    out[name] = default()
                continue
            out[name] = value_of(value)
        return out

    return convert


def _field_plan(
    name: str, field: fields.Field
) -> tuple[str, bool, Callable[[], Any] | Any, _Convert]:
    if (
        field.data_key not in (None, name)
        or field.attribute not in (None, name)
        or field.load_only
        or field.dump_only
        or field.pre_load
        or field.post_load
        or field.dump_default is not missing
    ):
        raise Unsupported(f"field {name}: renamed, one-way, processed or defaulted on dump")
    return name, field.required, _default_of(field), _nullable(field, _converter(field))


def _default_of(field: fields.Field) -> Callable[[], Any] | Any:
    """What a missing field becomes after load and dump, as a factory (or `missing`)."""
    default = field.load_default
    if default is missing:
        return missing
    if default is None:
        return lambda: None
    if default is list:
        return list
    raise Unsupported(f"field {field.name}: load_default {default!r}")


def _nullable(field: fields.Field, convert: _Convert) -> _Convert:
    if not field.allow_none:
        return convert  # None is then refused by marshmallow, undecided here (no `None` type)

    def or_none(value: Any) -> Any:
        return None if value is None else convert(value)

    return or_none


def _converter(field: fields.Field) -> _Convert:
    """The load-then-dump of one field for exact types; raises `_Undecided` otherwise."""
    if type(field) is fields.String:
        return _string(field)
    if type(field) is fields.Integer:
        return _integer(field)
    if type(field) is fields.DateTime and field.format in (None, "iso", "iso8601"):
        _no_validators(field)
        return _iso_datetime
    if type(field) is fields.Date and field.format in (None, "iso", "iso8601"):
        _no_validators(field)
        return _iso_date
    if type(field) is fields.List and not field.validators:
        return _list_of(_nullable(field.inner, _converter(field.inner)))
    if type(field) is fields.Nested and not field.validators and not field.many:
        if field.only or field.exclude or field.unknown not in (None, RAISE):
            raise Unsupported(f"field {field.name}: nested with only/exclude/unknown")
        return _object_converter(field.schema)
    raise Unsupported(f"field {field.name}: {type(field).__name__}")


def _string(field: fields.Field) -> _Convert:
    if len(field.validators) == 1 and type(field.validators[0]) is validate.Length:
        return _sized_string(field.validators[0])
    choices = _one_of(field)

    def string(value: Any) -> str:
        if type(value) is not str or (choices is not None and value not in choices):
            raise _Undecided
        return value

    return string


def _sized_string(length: validate.Length) -> _Convert:
    if length.equal is not None:
        raise Unsupported("Length(equal=...)")
    low, high = length.min, length.max

    def string(value: Any) -> str:
        if type(value) is not str:
            raise _Undecided
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            raise _Undecided
        return value

    return string


def _integer(field: fields.Field) -> _Convert:
    if getattr(field, "as_string", False):
        raise Unsupported(f"field {field.name}: dumped as a string")
    bounds = _range(field)

    def integer(value: Any) -> int:
        # `type(...) is int` leaves bools (refused by marshmallow) and floats to it.
        if type(value) is not int or (bounds is not None and not _within(bounds, value)):
            raise _Undecided
        return value

    return integer


def _within(bounds: validate.Range, value: int) -> bool:
    # Range.__call__'s comparisons, answering instead of raising.
    low, high = bounds.min, bounds.max
    if low is not None and (value < low if bounds.min_inclusive else value <= low):
        return False
    return high is None or (value <= high if bounds.max_inclusive else value < high)


def _iso_datetime(value: Any) -> str:
    if type(value) is datetime:
        return value.isoformat()
    if type(value) is not str:
        raise _Undecided
    try:
        # What marshmallow 4's DateTime(format="iso") does on load, then on dump.
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise _Undecided from None


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> str:
    if type(value) is date:
        return value.isoformat()
    # Only the plain form: other spellings `fromisoformat` reads are marshmallow's to judge.
    if type(value) is not str or not _DAY.fullmatch(value):
        raise _Undecided
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise _Undecided from None


def _list_of(item: _Convert) -> _Convert:
    def items(value: Any) -> list[Any]:
        if type(value) is not list:
            raise _Undecided
        return [item(each) for each in value]

    return items


def _no_validators(field: fields.Field) -> None:
    if field.validators:
        raise Unsupported(f"field {field.name}: validators")


def _one_of(field: fields.Field) -> frozenset[str] | None:
    if not field.validators:
        return None
    if len(field.validators) != 1 or type(field.validators[0]) is not validate.OneOf:
        raise Unsupported(f"field {field.name}: validators other than one OneOf")
    choices = tuple(field.validators[0].choices)
    if not all(type(choice) is str for choice in choices):
        raise Unsupported(f"field {field.name}: OneOf of non-strings")
    return frozenset(choices)


def _range(field: fields.Field) -> validate.Range | None:
    if not field.validators:
        return None
    if len(field.validators) != 1 or type(field.validators[0]) is not validate.Range:
        raise Unsupported(f"field {field.name}: validators other than one Range")
    return field.validators[0]
