"""The trail as a file anyone can check offline, with only the public key.

The export is JSON lines, each line the RFC 8785 canonical form of one object: a header
(format, the trail's public key, and the public keys its facts' sources sign with), then
every entry in chain order, then every signed checkpoint. Since each line must be canonical,
every byte of the file is either covered by a hash or a signature or fixed by the format, so
changing any byte makes `verify_export` fail. Each entry of a signed fact also carries that
fact's signature, checked against its source's key: the trail was not edited, and what it
holds came from the services.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.domain import (
    LATER_FIELDS,
    ChainCheck,
    ChainedEntry,
    ChainHead,
    Entry,
    signed_text,
)
from services.audit.signing import Checkpoint, is_signed_by, pem_of
from shared.fact_signing import SOURCE_PREFIX, load_public_key, problem_with

FORMAT = "caretrail-audit-export/1"


def _line(obj: dict[str, Any]) -> bytes:
    return rfc8785.dumps(obj) + b"\n"


def export_lines(
    entries: Iterable[ChainedEntry],
    checkpoints: Iterable[Checkpoint],
    public_key_pem: str,
    fact_keys: dict[str, list[str]],
) -> Iterator[bytes]:
    """The lines of an export (entries given in topic, partition, seq order); `fact_keys` are
    the PEM public keys of each fact source (`caretrail/records`, …)."""
    yield _line(
        {"kind": "header", "format": FORMAT, "public_key": public_key_pem, "fact_keys": fact_keys}
    )
    for stored in entries:
        entry = stored.entry.as_dict()
        yield _line({"kind": "entry", **entry, "prev_hash": stored.prev_hash, "hash": stored.hash})
    for checkpoint in checkpoints:
        yield _line(
            {
                "kind": "checkpoint",
                "created_at": checkpoint.created_at,
                "heads": [h.as_dict() for h in checkpoint.heads],
                "signature": checkpoint.signature,
            }
        )


class ExportRejected(ValueError):
    """The export is not the trail its checkpoints signed; the message says where."""


@dataclass
class ExportVerdict:
    entries: int = 0
    checkpoints: int = 0
    chains: int = 0
    unsigned_entries: int = 0
    authentic_facts: int = 0
    facts_without_signature: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Reading:
    checks: dict[tuple[str, int], ChainCheck] = field(default_factory=dict)
    lines_of: dict[tuple[str, int, int], int] = field(default_factory=dict)
    hashes: dict[tuple[str, int, int], str] = field(default_factory=dict)
    signed_up_to: dict[tuple[str, int], int] = field(default_factory=dict)
    fact_keys: dict[str, list[Ed25519PublicKey]] = field(default_factory=dict)


def verify_export(data: bytes, *, public_key_pem: bytes | None = None) -> ExportVerdict:
    """Check an export; `ExportRejected` names the first line that is wrong."""
    if not data.endswith(b"\n"):
        raise ExportRejected("the file does not end with a newline: it was cut or edited")
    lines = data[:-1].split(b"\n")
    header = _parse(lines[0], 1)
    if header.get("kind") != "header" or header.get("format") != FORMAT:
        raise ExportRejected(f"line 1: not a {FORMAT} header")
    try:
        key = load_public_key(str(header.get("public_key")))
        given = load_public_key(public_key_pem) if public_key_pem is not None else key
    except ValueError as err:
        raise ExportRejected(f"line 1: the public key is unreadable ({err})") from None
    if pem_of(key) != header["public_key"]:
        raise ExportRejected("line 1: the public key is not in its PEM form, so it was edited")
    if given != key:
        raise ExportRejected("line 1: the export is signed with another key than the one given")

    verdict = ExportVerdict()
    reading = _Reading(fact_keys=_fact_keys_of(header))
    for number, raw in enumerate(lines[1:], start=2):
        obj = _parse(raw, number)
        kind = obj.pop("kind", None)
        if kind == "entry" and verdict.checkpoints == 0:
            authentic = _read_entry(obj, number, reading)
            verdict.entries += 1
            verdict.authentic_facts += authentic
            verdict.facts_without_signature += not authentic
        elif kind == "checkpoint":
            _check_chains(reading)
            _read_checkpoint(obj, number, key, reading)
            verdict.checkpoints += 1
        else:
            raise ExportRejected(f"line {number}: unexpected {kind!r} line")
    _check_chains(reading)
    verdict.chains = len(reading.checks)
    if verdict.entries and not verdict.checkpoints:
        raise ExportRejected("the export has entries but no signed checkpoint")
    verdict.unsigned_entries = sum(
        check.entries - reading.signed_up_to.get(chain, 0)
        for chain, check in reading.checks.items()
    )
    if verdict.unsigned_entries:
        verdict.notes.append(
            f"{verdict.unsigned_entries} entries are newer than the last checkpoint: "
            "chained, not yet signed"
        )
    if verdict.facts_without_signature:
        verdict.notes.append(
            f"{verdict.facts_without_signature} entries predate signed facts: their chain "
            "holds, their source cannot be shown"
        )
    return verdict


def _fact_keys_of(header: dict[str, Any]) -> dict[str, list[Ed25519PublicKey]]:
    given = header.get("fact_keys")
    if set(header) != {"kind", "format", "public_key", "fact_keys"} or not isinstance(given, dict):
        raise ExportRejected("line 1: the header does not name its facts' keys")
    try:
        return {
            str(source): [load_public_key(str(pem)) for pem in pems]
            for source, pems in given.items()
        }
    except (TypeError, ValueError) as err:
        raise ExportRejected(f"line 1: a fact key is unreadable ({err})") from None


def _parse(raw: bytes, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ExportRejected(f"line {number}: not JSON") from None
    if not isinstance(obj, dict):
        raise ExportRejected(f"line {number}: not a JSON object")
    if rfc8785.dumps(obj) != raw:
        raise ExportRejected(f"line {number}: not in canonical form, so it was edited")
    return obj


_TEXT = ("event_id", "type", "time", "actor", "patient", "source", "topic")
_OPTIONAL_TEXT = ("role", "org", "action", "outcome", "purpose", "break_glass_reason", "trace_id")
# Exports written before the trail kept these have no such key.
_LATER_TEXT = LATER_FIELDS
_NUMBERS = ("partition", "offset", "seq")
_LISTS = ("record_ids", "categories", "consent_ids")


def _entry_of(obj: dict[str, Any]) -> ChainedEntry | None:
    """The entry of an export line, or None when the line does not have an entry's shape."""
    shape_ok = (
        set(obj) - set(_LATER_TEXT)
        == {*_TEXT, *_OPTIONAL_TEXT, *_NUMBERS, *_LISTS, "prev_hash", "hash"}
        and all(isinstance(obj[n], str) for n in (*_TEXT, "prev_hash", "hash"))
        and all(
            obj.get(n) is None or isinstance(obj[n], str) for n in (*_OPTIONAL_TEXT, *_LATER_TEXT)
        )
        and all(type(obj[n]) is int for n in _NUMBERS)
        and all(
            isinstance(obj[n], list) and all(isinstance(v, str) for v in obj[n]) for n in _LISTS
        )
    )
    if not shape_ok:
        return None
    fields: dict[str, Any] = {
        n: tuple(v) if n in _LISTS else v for n, v in obj.items() if n not in ("prev_hash", "hash")
    }
    return ChainedEntry(Entry(**fields), obj["prev_hash"], obj["hash"])


def _read_entry(obj: dict[str, Any], number: int, reading: _Reading) -> bool:
    """Read an entry line; answer whether it shows its fact's signature (which must verify)."""
    stored = _entry_of(obj)
    if stored is None:
        raise ExportRejected(f"line {number}: not an entry")
    entry = stored.entry
    text = signed_text(entry)
    if text is not None:
        source = SOURCE_PREFIX + entry.source
        keys = reading.fact_keys.get(source, [])
        problem = problem_with(keys, signature=entry.signature, source=source, text=text)
        if problem is not None:
            raise ExportRejected(f"line {number}: event {entry.event_id}: {problem}")
    chain = (entry.topic, entry.partition)
    check = reading.checks.setdefault(chain, ChainCheck(*chain))
    check.add(stored)
    reading.lines_of.setdefault((*chain, entry.seq), number)
    reading.hashes[(*chain, entry.seq)] = stored.hash
    return text is not None


def _check_chains(reading: _Reading) -> None:
    for (topic, partition), check in reading.checks.items():
        report = check.report()
        if not report.ok:
            line = reading.lines_of.get((topic, partition, report.first_bad_seq or 0), "?")
            raise ExportRejected(
                f"line {line}: {topic} partition {partition} seq {report.first_bad_seq}: "
                f"{report.problem}"
            )


def _read_checkpoint(obj: dict[str, Any], number: int, key: Any, reading: _Reading) -> None:
    try:
        heads = tuple(ChainHead(**h) for h in obj["heads"])
        checkpoint = Checkpoint(obj["created_at"], heads, obj["signature"])
    except (KeyError, TypeError):
        raise ExportRejected(f"line {number}: not a checkpoint") from None
    if set(obj) != {"created_at", "heads", "signature"} or not is_signed_by(key, checkpoint):
        raise ExportRejected(f"line {number}: the checkpoint's signature does not verify")
    for head in heads:
        if reading.hashes.get((head.topic, head.partition, head.seq)) != head.hash:
            raise ExportRejected(
                f"line {number}: {head.topic} partition {head.partition} seq {head.seq} "
                "differs from the signed checkpoint"
            )
        chain = (head.topic, head.partition)
        reading.signed_up_to[chain] = max(reading.signed_up_to.get(chain, 0), head.seq)
