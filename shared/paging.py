"""Opaque list cursors: `{"items": [...], "next_cursor": ...}` in every service.

A cursor is the position after which the next page starts (a row's serial number or id),
as base64url JSON so that callers treat it as opaque. A cursor this service did not give
out is refused with 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypeVar

from shared.errors import InvalidInput

Position = TypeVar("Position", int, str)


def encode_cursor(position: int | str) -> str:
    return base64.urlsafe_b64encode(json.dumps([position]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[Position]) -> Position | None:
    """The position a cursor holds, or None for the first page."""
    if cursor is None:
        return None
    try:
        (position,) = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("the cursor is not one this service gave out") from None
    if type(position) is not kind or (isinstance(position, int) and position < 0):
        raise InvalidInput("the cursor is not one this service gave out")
    return position
