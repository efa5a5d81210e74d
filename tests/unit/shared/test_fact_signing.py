"""Signed facts: what a producer signs, what a consumer accepts, where keys come from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import fact_signing
from shared.events import (
    SIGNATURE_HEADER,
    authenticity_problem,
    from_kafka,
    new_event,
    signed_text_of,
    to_kafka,
    unsigned_record,
)
from shared.fact_signing import FactKeys, MissingSigningKey


@pytest.fixture
def keys_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(fact_signing.KEYS_DIR_ENV, str(tmp_path))
    fact_signing.signing_key.cache_clear()
    yield tmp_path
    fact_signing.signing_key.cache_clear()


def a_read(source: str = "records", actor: str = "practitioner:dr-lee"):
    return new_event(
        "record.accessed",
        source_service=source,
        subject="pat-1",
        actor=actor,
        data={
            "patient": "pat-1",
            "actor": "dr-lee",
            "role": "practitioner",
            "org": "org-a",
            "action": "read",
            "record_ids": ["r-1"],
            "categories": ["Observation"],
            "purpose": "TREAT",
            "outcome": "permit",
        },
    )


def read_back(record) -> object:
    return from_kafka(record.headers, record.key, record.value)


def test_a_written_fact_is_the_binding_plus_one_signature_that_verifies(keys_dir):
    event = a_read()
    record = to_kafka(event)
    unsigned = unsigned_record(event)
    assert record.headers[:-1] == unsigned.headers
    assert record.headers[-1][0] == SIGNATURE_HEADER
    assert (record.key, record.value) == (unsigned.key, unsigned.value)
    assert authenticity_problem(read_back(record), FactKeys.from_directory()) is None


def test_a_fact_changed_on_the_way_is_refused(keys_dir):
    record = to_kafka(a_read())
    bent_value = replace(record, value=record.value.replace(b"dr-lee", b"dr-bad"))
    bent_actor = replace(
        record,
        headers=[(n, b"practitioner:dr-bad" if n == "ce_actor" else v) for n, v in record.headers],
    )
    keys = FactKeys.from_directory()
    for bent in (bent_value, bent_actor):
        assert authenticity_problem(read_back(bent), keys) == (
            "the signature does not verify for source 'caretrail/records'"
        )


def test_a_fact_signed_with_another_key_or_none_is_refused(keys_dir):
    event = a_read()
    unsigned = unsigned_record(event)
    text = signed_text_of(event, fact_signing.data_digest(unsigned.value))
    forged = fact_signing.sign(Ed25519PrivateKey.generate(), text)
    keys = FactKeys.from_directory()
    with_forged = replace(
        unsigned, headers=[*unsigned.headers, (SIGNATURE_HEADER, forged.encode())]
    )
    assert "does not verify" in authenticity_problem(read_back(with_forged), keys)
    assert authenticity_problem(read_back(unsigned), keys) == "the fact is not signed"


def test_a_source_without_a_trusted_key_is_refused_and_reaches_no_file(keys_dir):
    keys = FactKeys.from_directory()
    for source in ("caretrail/../../etc/x", "caretrail/unknown", "elsewhere/records"):
        event = replace(unsigned_fact := a_read(), source=source)
        record = unsigned_record(event)
        assert authenticity_problem(read_back(record), keys) == (
            f"no key is trusted for source {source!r}"
        )
    assert unsigned_fact.source == "caretrail/records"
    with pytest.raises(MissingSigningKey):
        fact_signing.signing_key("caretrail/../../etc/x")
    assert sorted(p.name for p in keys_dir.iterdir() if not p.name.startswith("records")) == [
        "audit.pem",
        "audit.pub.pem",
        "consent.pem",
        "consent.pub.pem",
        "notify.pem",
        "notify.pub.pem",
    ]


def test_outside_local_mode_a_missing_key_is_an_error_not_a_new_key(keys_dir, monkeypatch):
    monkeypatch.delenv("CARETRAIL_LOCAL", raising=False)
    with pytest.raises(MissingSigningKey, match="caretrail keys generate"):
        fact_signing.signing_key("records")
    assert list(keys_dir.iterdir()) == []
    fact_signing.generate("records", keys_dir)
    assert (keys_dir / "records.pem").stat().st_mode & 0o077 == 0  # the private key is private
    record = to_kafka(a_read())
    assert authenticity_problem(read_back(record), FactKeys.from_directory()) is None


def test_a_key_placed_later_is_trusted_without_a_restart(keys_dir):
    keys = FactKeys.from_directory()
    record = to_kafka(a_read(source="labs"))
    assert authenticity_problem(read_back(record), keys) is None
    assert (keys_dir / "labs.pub.pem").exists()
