"""Crypto-shredding: content opens with its patient's data key only, while that key exists."""

from __future__ import annotations

import base64

import pytest

from services.records.sealing import (
    CannotOpen,
    KeyRing,
    MasterKey,
    Sealed,
    master_key_from,
    note_context,
    record_context,
)

MASTER = MasterKey(b"m" * 32)


def test_sealed_content_opens_with_its_key_and_context_only():
    ring = KeyRing(MASTER)
    key, _ = ring.new_key("pat-1")
    other, _ = ring.new_key("pat-2")
    context = record_context("pat-1", "rec-1", 1)
    sealed = key.seal(b'{"resourceType": "Observation"}', context)

    assert key.open(sealed, context) == b'{"resourceType": "Observation"}'
    assert b"Observation" not in sealed.ciphertext
    with pytest.raises(CannotOpen):
        other.open(sealed, context)
    with pytest.raises(CannotOpen):
        key.open(sealed, record_context("pat-1", "rec-2", 1))  # moved to another record


def test_a_sealed_note_is_one_opaque_string_that_opens_for_its_patient_only():
    ring = KeyRing(MASTER)
    key, _ = ring.new_key("pat-1")
    text = key.seal(b"overdose, HIV+", note_context("pat-1")).to_text()

    assert "overdose" not in text and "HIV" not in text
    assert key.open(Sealed.from_text(text), note_context("pat-1")) == b"overdose, HIV+"
    with pytest.raises(CannotOpen):
        key.open(Sealed.from_text(text), note_context("pat-2"))
    for junk in ("", "a.b", "a.b.c.d", "k.!!.??", text.replace(".", "", 1)):
        with pytest.raises(CannotOpen):
            key.open(Sealed.from_text(junk), note_context("pat-1"))


def test_a_wrapped_key_unwraps_for_its_patient_under_its_master_key_only():
    key, wrapped = KeyRing(MASTER).new_key("pat-1")

    assert MASTER.unwrap("pat-1", key.id, wrapped) == key
    with pytest.raises(CannotOpen):
        MASTER.unwrap("pat-2", key.id, wrapped)
    with pytest.raises(CannotOpen):
        MasterKey(b"n" * 32).unwrap("pat-1", key.id, wrapped)


def test_code_digests_match_equal_codes_and_differ_between_patients():
    ring = KeyRing(MASTER)
    mine, _ = ring.new_key("pat-1")
    yours, _ = ring.new_key("pat-2")
    assert mine.digest("8867-4") == mine.digest("8867-4")
    assert mine.digest("8867-4") != yours.digest("8867-4")
    assert "8867-4" not in mine.digest("8867-4")


def test_the_keyring_forgets_an_erased_patients_keys_and_stays_small():
    ring = KeyRing(MASTER, capacity=2)
    key, wrapped = ring.new_key("pat-1")
    ring.new_key("pat-2")
    ring.new_key("pat-3")  # pat-1 falls out of the cache: unwrapping it again still works
    assert ring.unwrap("pat-1", key.id, wrapped) == key
    ring.forget("pat-1")
    assert ("pat-1", key.id) not in ring._cache


def test_the_master_key_comes_from_settings_or_is_the_development_one(caplog):
    configured = base64.b64encode(b"k" * 32).decode()
    key, wrapped = KeyRing(master_key_from({"master_key": configured})).new_key("p")
    assert MasterKey(b"k" * 32).unwrap("p", key.id, wrapped) == key
    master_key_from({})
    assert "development master key" in caplog.text
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            master_key_from({"master_key": bad})
