"""An export is checked offline with only the public key; any edited byte fails it."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain import ChainHead
from services.audit.export import ExportRejected, export_lines, verify_export
from services.audit.signing import public_pem, sign
from tests.unit.audit.test_chain import TOPIC, build_chain

KEY = Ed25519PrivateKey.generate()


def export_of(chain, *, key=KEY, signed_up_to=None) -> bytes:
    last = chain[(signed_up_to or len(chain)) - 1]
    checkpoint = sign(
        key, "2030-01-01T00:00:00.000000Z", (ChainHead(TOPIC, 0, last.entry.seq, last.hash),)
    )
    return b"".join(export_lines(chain, [checkpoint], public_pem(key)))


def test_an_untouched_export_verifies_with_the_public_key():
    data = export_of(build_chain(3))

    verdict = verify_export(data, public_key_pem=public_pem(KEY).encode())

    assert (verdict.entries, verdict.checkpoints, verdict.chains) == (3, 1, 1)
    assert verdict.unsigned_entries == 0


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
