"""CloudEvents in Kafka binary content mode, written and read without building SDK objects.

Every fact passes through here on its way out (the outbox row) and on its way in (each
consumer, the audit rebuild). The `cloudevents` SDK's Kafka binding did the same through a
CloudEvent object, a validation pass with `defaultdict`s and regexes, and `dateutil`; this
module produces the same headers and value bytes and accepts the same messages (proved against
the SDK by tests/unit/shared/test_events_against_sdk.py), at a fraction of the cost.

Rules kept from the binding (cloudevents 2.2, `core.bindings.kafka.to_binary`/`from_binary`)
and from the CloudEvent constructors it calls (`core.v1.event`, `core.v03.event`):

- out: one `ce_<name>` header per attribute in the attributes' order, `datacontenttype` as
  `content-type`, a UTC time as RFC 3339 with `Z`, the data as `json.dumps` writes it;
- in: header names are matched case-insensitively, every header value must be UTF-8, the
  `time` header is ISO 8601 with an offset, a key becomes the `partitionkey` attribute;
  one departure: a missing `id` or `time` is refused, where the SDK's constructors made one
  up (a UUID4, now), since a fact with a made-up id would take effect again on redelivery;
- both ways: `id`, `source`, `type` non-empty, the spec version `1.0` (or `0.3` on the way
  in), a time with a zone, extension names of lowercase letters and digits.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from dateutil.parser import isoparse

CE_PREFIX = "ce_"
CONTENT_TYPE_HEADER = "content-type"
JSON_CONTENT_TYPE = "application/json"
# Header names of the attributes every fact has (`datacontenttype` travels as `content-type`).
_HEADERS = {
    **{
        name: CE_PREFIX + name
        for name in ("id", "source", "type", "specversion", "time", "subject", "actor")
    },
    "datacontenttype": CONTENT_TYPE_HEADER,
    "partitionkey": CE_PREFIX + "partitionkey",
    "traceparent": CE_PREFIX + "traceparent",
}

# What each attribute of a spec version must be; any other attribute is an extension, whose
# name must be lowercase letters and digits (and not `data`).
_TEXT, _TIME, _VERSION = "a non-empty string", "a time with a zone", "the spec version"
_RULES = {
    "1.0": {
        "id": _TEXT,
        "source": _TEXT,
        "type": _TEXT,
        "specversion": _VERSION,
        "datacontenttype": _TEXT,
        "dataschema": _TEXT,
        "subject": _TEXT,
        "time": _TIME,
    },
    "0.3": {
        "id": _TEXT,
        "source": _TEXT,
        "type": _TEXT,
        "specversion": _VERSION,
        "datacontenttype": _TEXT,
        "datacontentencoding": _TEXT,
        "schemaurl": _TEXT,
        "subject": _TEXT,
        "time": _TIME,
    },
}
_REQUIRED = frozenset(("id", "source", "type", "specversion"))

# The SDK's test for a JSON media type (`JSONFormat.JSON_CONTENT_TYPE_PATTERN`), used with
# `re.match`, so a trailing newline still matches, as it does there.
_JSON_MEDIA_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-\.]+\+)?json(;.*)?$")
# The times this module writes (UTC, whole or microsecond seconds): parsed by the standard
# library, which agrees with `isoparse` on them; any other form goes to `isoparse`.
_WRITTEN_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z")


class NotACloudEvent(ValueError):
    """A message (or event) that breaks the binary binding or the CloudEvents attribute rules."""


def _rfc3339(value: Any) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# Built once: `json.dumps(data, cls=...)` builds an encoder per call. Same settings as the
# SDK's (ASCII only, `", "` and `": "` separators), so the value bytes are the same.
_DATA_ENCODER = json.JSONEncoder(default=_rfc3339)


def write_binary(
    attributes: Mapping[str, Any], data: dict[str, Any]
) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """The key, headers and value of an event with these attributes (in order) and data.

    The key is the `partitionkey` attribute (empty without one).
    """
    check_attributes(attributes, "1.0")
    if not isinstance(data, dict):
        raise NotACloudEvent("data is not a JSON object")
    headers = [
        (_HEADERS.get(name) or CE_PREFIX + name, _header_value(value))
        for name, value in attributes.items()
        if value is not None
    ]
    return _key_of(attributes.get("partitionkey")), headers, _DATA_ENCODER.encode(data).encode()


def _header_value(value: Any) -> bytes:
    if type(value) is str:
        return value.encode()
    return (_rfc3339(value) if isinstance(value, datetime) else str(value)).encode()


def _key_of(partition_key: Any) -> bytes:
    if partition_key is None or isinstance(partition_key, bytes):
        return partition_key or b""
    return str(partition_key).encode()


def read_binary(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes], key: Any, value: Any
) -> tuple[dict[str, Any], bytes | None]:
    """The attributes of a message and its value if that is JSON text (else `None`).

    `NotACloudEvent` when the message breaks the binding or the attribute rules.
    """
    try:
        attributes = _attributes_of(dict(headers), key)
    except Exception as err:  # bad header pairs, names, UTF-8 or times: all "not a CloudEvent"
        raise NotACloudEvent(f"unreadable headers or key: {type(err).__name__}") from None
    version = attributes.setdefault("specversion", "1.0")
    # The SDK makes up a missing id or time; a fact without its own cannot be deduplicated or
    # placed in time, so it is refused (a redelivery would otherwise take effect twice).
    if "id" not in attributes or "time" not in attributes:
        raise NotACloudEvent("a fact needs its ce_id and ce_time")
    check_attributes(attributes, "0.3" if version == "0.3" else "1.0")
    return attributes, _json_body(value, attributes.get("datacontenttype"))


def _attributes_of(headers: dict[Any, Any], key: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, raw in headers.items():
        text = raw.decode("utf-8")  # every header, as the SDK does: a non-UTF-8 one refuses
        attribute = _attribute_named(name)
        if attribute == "time":
            attributes["time"] = parse_time(text)
        elif attribute is not None:
            attributes[attribute] = text
    if key is not None:
        attributes["partitionkey"] = key.decode("utf-8") if isinstance(key, bytes) else key
    return attributes


@functools.lru_cache(maxsize=256)
def _attribute_named(header: str) -> str | None:
    """The attribute a header carries (`None` for other headers); names are case-insensitive."""
    lowered = header.lower()
    if lowered.startswith(CE_PREFIX):
        return lowered[len(CE_PREFIX) :]
    return "datacontenttype" if lowered == CONTENT_TYPE_HEADER else None


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time as the SDK reads it (`dateutil`'s `isoparse`)."""
    if _WRITTEN_TIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # e.g. hour 24, which isoparse reads as the next midnight
    return isoparse(text)


def _json_body(value: Any, content_type: Any) -> bytes | None:
    if not value:
        return None
    if not isinstance(value, bytes | bytearray):
        raise NotACloudEvent(f"a message value of type {type(value).__name__}")
    return bytes(value) if is_json_media_type(content_type or JSON_CONTENT_TYPE) else None


@functools.lru_cache(maxsize=64)
def is_json_media_type(content_type: str) -> bool:
    return _JSON_MEDIA_TYPE.match(content_type) is not None


def json_data(body: bytes | None) -> Any:
    """The data of a JSON body as the SDK reads it (`json.loads`; `None` when it is not JSON)."""
    if body is None:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def check_attributes(attributes: Mapping[str, Any], version: str) -> None:
    """`NotACloudEvent` unless the attributes obey the rules of CloudEvents `version`."""
    rules = _RULES[version]
    problems = [name for name in _REQUIRED if name not in attributes]
    for name, value in attributes.items():
        rule = rules.get(name)
        if rule is _TEXT:
            fits = isinstance(value, str) and value != ""
        elif rule is _TIME:
            fits = isinstance(value, datetime) and bool(value.tzinfo)
        elif rule is _VERSION:
            fits = value == version
        else:
            fits = _extension_name(name)
        if not fits:
            problems.append(name)
    if problems:
        raise NotACloudEvent(f"invalid attributes: {', '.join(sorted(problems))}")


@functools.lru_cache(maxsize=256)
def _extension_name(name: str) -> bool:
    return name != "data" and re.match(r"^[a-z0-9]+$", name) is not None
