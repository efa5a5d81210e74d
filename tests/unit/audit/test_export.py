"""An export is checked offline with only the public key; any edited byte fails it."""

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain import ChainedEntry, ChainHead, chained, entry_of
from services.audit.export import ExportRejected, export_lines, verify_export
from services.audit.signing import public_pem, sign
from shared import fact_signing
from shared.events import from_kafka, signed_text_of, to_kafka
from shared.fact_signing import FactKeys
from shared.inbox import Origin
from tests.unit.audit.facts import access
from tests.unit.audit.test_chain import TOPIC, build_chain

KEY = Ed25519PrivateKey.generate()


def export_of(chain, *, key=KEY, signed_up_to=None, fact_keys=None) -> bytes:
    last = chain[(signed_up_to or len(chain)) - 1]
    checkpoint = sign(
        key, "2030-01-01T00:00:00.000000Z", (ChainHead(TOPIC, 0, last.entry.seq, last.hash),)
    )
    return b"".join(export_lines(chain, [checkpoint], public_pem(key), fact_keys or {}))


def test_an_untouched_export_verifies_with_the_public_key():
    data = export_of(build_chain(3))

    verdict = verify_export(data, public_key_pem=public_pem(KEY).encode())

    assert (verdict.entries, verdict.checkpoints, verdict.chains) == (3, 1, 1)
    assert verdict.unsigned_entries == 0


def test_an_export_with_a_sealed_break_glass_note_verifies_and_keeps_it_opaque():
    note = "key-1.bm9uY2U.c2VhbGVkIG5vdGU"
    emergency = access("p-1", actor="practitioner:dr-er", break_glass_reason="OVRER")
    noted = access(
        "p-1", actor="practitioner:dr-er", break_glass_reason="other", break_glass_note=note
    )
    first = chained(entry_of(emergency, Origin(TOPIC, 0, 1)), None)
    head = ChainHead(TOPIC, 0, first.entry.seq, first.hash)
    second = chained(entry_of(noted, Origin(TOPIC, 0, 2)), head)
    data = export_of([first, second])

    verdict = verify_export(data, public_key_pem=public_pem(KEY).encode())

    assert verdict.entries == 2
    assert note.encode() in data
    edited = data.replace(note.encode(), note.replace("key-1", "key-2").encode())
    with pytest.raises(ExportRejected):
        verify_export(edited)


def test_entries_newer_than_the_last_checkpoint_are_reported_as_unsigned():
    verdict = verify_export(export_of(build_chain(3), signed_up_to=2))

    assert verdict.unsigned_entries == 1 and verdict.notes


def test_any_edited_byte_makes_the_export_fail():
    data = export_of(build_chain(2))

    for position in range(len(data)):
        for replacement in {
            data[position] ^ 0x01,
            ord("0") if data[position] != ord("0") else ord("1"),
        }:
            edited = data[:position] + bytes([replacement]) + data[position + 1 :]
            with pytest.raises(ExportRejected):
                verify_export(edited)


def test_a_dropped_line_fails():
    lines = export_of(build_chain(3)).splitlines(keepends=True)

    for dropped in range(len(lines)):
        with pytest.raises(ExportRejected):
            verify_export(b"".join(lines[:dropped] + lines[dropped + 1 :]))


def test_an_export_signed_by_another_key_fails_against_the_expected_key():
    data = export_of(build_chain(2), key=Ed25519PrivateKey.generate())

    with pytest.raises(ExportRejected, match="another key"):
        verify_export(data, public_key_pem=public_pem(KEY).encode())


def test_an_export_whose_checkpoints_were_stripped_fails():
    lines = export_of(build_chain(2)).splitlines(keepends=True)

    with pytest.raises(ExportRejected, match="no signed checkpoint"):
        verify_export(b"".join(lines[:-1]))


# --- the facts' own signatures ---------------------------------------------------------------


@pytest.fixture
def keys_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(fact_signing.KEYS_DIR_ENV, str(tmp_path))
    fact_signing.signing_key.cache_clear()
    yield tmp_path
    fact_signing.signing_key.cache_clear()


def signed_chain(count: int, *, forge_at: int | None = None) -> list[ChainedEntry]:
    """A chain of entries of facts as they came off Kafka, signed by records (but the one at
    `forge_at`, signed by a key records never had, as a forger with the trail's key writes)."""
    chain: list[ChainedEntry] = []
    for n in range(count):
        record = to_kafka(access("p-1", actor="practitioner:dr-lee", record_ids=(f"r{n}",)))
        fact = from_kafka(record.headers, record.key, record.value)
        if n == forge_at:
            text = signed_text_of(fact, fact.data_digest or "")
            fact = replace(fact, signature=fact_signing.sign(Ed25519PrivateKey.generate(), text))
        head = ChainHead(TOPIC, 0, chain[-1].entry.seq, chain[-1].hash) if chain else None
        chain.append(chained(entry_of(fact, Origin(TOPIC, 0, 10 + n)), head))
    return chain


def records_keys() -> dict[str, list[str]]:
    return FactKeys.from_directory().pems(["caretrail/records"])


def test_entries_of_signed_facts_show_their_source_offline(keys_dir):
    chain = signed_chain(3)
    assert all(stored.entry.signature for stored in chain)

    verdict = verify_export(export_of(chain, fact_keys=records_keys()))

    assert (verdict.entries, verdict.authentic_facts, verdict.facts_without_signature) == (3, 3, 0)


def test_a_fact_its_source_never_signed_fails_even_with_the_trails_own_key(keys_dir):
    # Someone holding the audit database and its signing key can chain and checkpoint any
    # entry; only the records key could have signed the fact it claims to be.
    data = export_of(signed_chain(3, forge_at=1), fact_keys=records_keys())

    with pytest.raises(ExportRejected, match="line 3: .* does not verify for source"):
        verify_export(data)


def test_entries_without_keys_for_their_source_fail(keys_dir):
    with pytest.raises(ExportRejected, match="no key is trusted for source 'caretrail/records'"):
        verify_export(export_of(signed_chain(1)))


def test_entries_of_facts_from_before_signing_are_counted_and_noted():
    verdict = verify_export(export_of(build_chain(2)))

    assert (verdict.authentic_facts, verdict.facts_without_signature) == (0, 2)
    assert any("predate signed facts" in note for note in verdict.notes)
