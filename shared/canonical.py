"""Canonical JSON (JCS, RFC 8785): orjson where it writes the same bytes, `rfc8785` otherwise.

The audit chain hashes the JCS form of every entry, so these bytes must never differ from
the `rfc8785` package's. orjson writes JSON the same way RFC 8785 does for the values that
`_plain` accepts: strings escaped alike (only `"`, `\\` and controls, lower-case `\\u00xx`),
integers as their decimal digits, keys sorted by code point, which is UTF-16 order for ASCII
keys. Everything else goes to `rfc8785`: floats (ECMAScript number formatting), integers
outside JSON's safe range (an error there), non-ASCII keys (UTF-16 order differs from code
point order beyond the BMP), subclasses of the JSON types, and strings orjson refuses (lone
surrogates). tests/unit/shared/test_canonical.py holds the two to the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

_SAFE_INTEGER = 2**53 - 1  # RFC 8785 section 3.2.2.3: numbers are IEEE 754 doubles


def dumps(value: Any) -> bytes:
    """The RFC 8785 form of `value` (raises as `rfc8785.dumps` does on what JCS cannot hold)."""
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: rfc8785 decides what it is
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """Whether orjson writes `value` byte for byte as RFC 8785 does."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if kind is list or kind is tuple:
        return all(map(_plain, value))
    if kind is dict:
        return all(type(key) is str and key.isascii() for key in value) and all(
            map(_plain, value.values())
        )
    return False
