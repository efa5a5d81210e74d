"""The canonical-JSON fast path writes exactly the bytes of the `rfc8785` package."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import canonical

# Every code point, lone surrogates included: JSON text read from Kafka may carry them.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
ascii_text = st.text(st.characters(max_codepoint=0x7F), max_size=12)
near_limits = st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 2**64, -(2**63) - 1])
integers = st.integers() | near_limits
scalars = st.none() | st.booleans() | integers | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(any_text | ascii_text, inner, max_size=4)
    ),
    max_leaves=20,
)

# The shape of an audit entry (`Entry.as_dict()`), with any text and any integer in it.
entries = st.fixed_dictionaries(
    {
        "event_id": any_text,
        "type": any_text,
        "time": any_text,
        "actor": any_text,
        "role": st.none() | any_text,
        "org": st.none() | any_text,
        "patient": any_text,
        "action": st.none() | any_text,
        "outcome": st.none() | any_text,
        "purpose": st.none() | any_text,
        "record_ids": st.lists(any_text, max_size=3),
        "categories": st.lists(any_text, max_size=3),
        "consent_ids": st.lists(any_text, max_size=3),
        "break_glass_reason": st.none() | any_text,
        "source": any_text,
        "trace_id": st.none() | any_text,
        "topic": any_text,
        "partition": integers,
        "offset": integers,
        "seq": integers,
    }
)


def outcome(dumps: Any, value: Any) -> bytes | type[Exception]:
    """The bytes `dumps` writes, or the kind of error it raises."""
    try:
        return dumps(value)  # type: ignore[no-any-return]
    except Exception as err:
        return type(err)


@settings(max_examples=600)
@given(entries)
def test_every_entry_shape_is_written_as_rfc8785_writes_it(entry):
    assert outcome(canonical.dumps, entry) == outcome(rfc8785.dumps, entry)


@settings(max_examples=600)
@given(json_values)
def test_every_json_value_is_written_as_rfc8785_writes_it(value):
    assert outcome(canonical.dumps, value) == outcome(rfc8785.dumps, value)


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "value",
    [
        '\x00\x07\b\t\n\x0b\f\r\x1f\x7f "\\ /',  # every kind of escape, and none for DEL or /
        "\u2028\u2029\ufeff é 😀",  # ECMAScript line separators and non-ASCII stay literal
        {"\ue000": 1, "\U0001f600": 2, "z": 3},  # UTF-16 order differs from code point order
        {"b": [1, True, None], "a": {"d": -0, "c": ""}},
        1.0,
        -0.0,
        1e21,
        5e-324,
        2**53 - 1,
        2**53,
        Level.HIGH,
        ("a", ("b",)),
        "\ud800 alone",
    ],
)
def test_edge_cases_are_written_as_rfc8785_writes_them(value):
    assert outcome(canonical.dumps, value) == outcome(rfc8785.dumps, value)


def test_an_entry_of_plain_values_does_not_go_through_rfc8785(monkeypatch):
    """The fast path is taken for what the trail holds (else it would only be a detour)."""

    def refuse(value: Any) -> bytes:
        raise AssertionError("rfc8785 was called")

    monkeypatch.setattr(canonical.rfc8785, "dumps", refuse)
    entry = {"event_id": "e-1", "record_ids": ["r-1", "r-é"], "seq": 7, "org": None}

    assert (
        canonical.dumps(entry)
        == b'{"event_id":"e-1","org":null,"record_ids":["r-1","r-\xc3\xa9"],"seq":7}'
    )
