"""The trail's chain: what an entry keeps, and how any change to a chain is found."""

from dataclasses import replace

import pytest

from services.audit.domain import (
    GENESIS_HASH,
    LATER_FIELDS,
    ChainedEntry,
    ChainHead,
    chain_hash,
    chained,
    check_chains,
    entry_fields,
    entry_of,
    link,
)
from shared import canonical
from shared.inbox import Origin
from tests.unit.audit.facts import access, consent_granted, record_created

TOPIC = "caretrail.access.v1"


def build_chain(count: int, partition: int = 0) -> list[ChainedEntry]:
    chain: list[ChainedEntry] = []
    for n in range(count):
        event = access("p-1", actor="practitioner:dr-lee", org="org-a", record_ids=(f"r{n}",))
        head = ChainHead(TOPIC, partition, chain[-1].entry.seq, chain[-1].hash) if chain else None
        chain.append(chained(entry_of(event, Origin(TOPIC, partition, 10 + n)), head))
    return chain


def relinked(entry, prev_hash: str, seq: int) -> ChainedEntry:
    """What a careful forger writes: an entry at `seq` with a correctly computed hash."""
    placed = replace(entry, seq=seq)
    return ChainedEntry(placed, prev_hash, chain_hash(prev_hash, placed))


def only_report(entries, signed=None):
    [report] = check_chains(entries, signed)
    return report


def test_an_access_entry_keeps_who_why_what_and_where_but_no_content():
    event = access(
        "p-1",
        actor="practitioner:dr-lee",
        org="org-a",
        record_ids=("r1", "r2"),
        consent_ids=("c-9",),
        purpose="ETREAT",
        break_glass_reason="OVRER",
        break_glass_note="key-1.bm9uY2U.c2VhbGVk",
    )
    entry = entry_of(event, Origin(TOPIC, 3, 41))

    assert (entry.actor, entry.role, entry.org, entry.patient) == (
        "practitioner:dr-lee",
        "practitioner",
        "org-a",
        "p-1",
    )
    assert (entry.action, entry.outcome, entry.purpose) == ("read", "permit", "ETREAT")
    assert entry.record_ids == ("r1", "r2") and entry.consent_ids == ("c-9",)
    assert entry.break_glass_reason == "OVRER"
    assert entry.break_glass_note == "key-1.bm9uY2U.c2VhbGVk"  # kept as sealed: opaque here
    assert b'"break_glass_note":"key-1.bm9uY2U.c2VhbGVk"' in entry.canonical()
    assert (entry.source, entry.topic, entry.partition, entry.offset) == ("records", TOPIC, 3, 41)


def test_a_refused_access_keeps_the_reason_records_gave():
    entry = entry_of(access("p-1", actor="practitioner:dr-x", outcome="deny"), Origin(TOPIC, 0, 1))

    assert (entry.outcome, entry.reason) == ("deny", "no consent covers it")
    assert b'"reason":"no consent covers it"' in entry.canonical()


def test_an_entry_without_a_reason_hashes_as_entries_did_before_the_trail_kept_reasons():
    # An entry chained before `reason` (or the fact's signature) existed must keep verifying:
    # its hash input had no such key, so an unset one adds none.
    entry = entry_of(access("p-1", actor="practitioner:dr-lee"), Origin(TOPIC, 0, 1))
    before = {k: v for k, v in entry.as_dict().items() if k not in LATER_FIELDS}

    assert (entry.reason, entry.signature, entry.data_digest) == (None, None, None)
    assert entry.break_glass_note is None
    assert entry.canonical() == canonical.dumps(before)
    assert "break_glass_note" in LATER_FIELDS


def test_a_record_entry_names_the_record_and_the_authoring_org_but_not_the_content():
    event = record_created("p-1", author="dr-lee", org="org-a")
    entry = entry_of(event, Origin("caretrail.records.v1", 0, 5))

    assert entry.record_ids == (event.data["record_id"],)
    assert (entry.org, entry.action, entry.role) == ("org-a", "create", "practitioner")
    assert "c2VjcmV0" not in entry.canonical().decode()


def test_the_same_event_at_the_same_place_always_hashes_the_same():
    event = access("p-1", actor="practitioner:dr-lee")
    first = chained(entry_of(event, Origin(TOPIC, 0, 1)), None)
    again = chained(entry_of(event, Origin(TOPIC, 0, 1)), None)

    assert first == again
    assert first.prev_hash == GENESIS_HASH and first.entry.seq == 1


def test_an_untouched_chain_verifies():
    report = only_report(build_chain(5))

    assert report.ok and report.entries == 5 and report.first_bad_seq is None


def test_an_edited_field_is_found_at_its_entry():
    chain = build_chain(5)
    chain[2] = replace(chain[2], entry=replace(chain[2].entry, actor="practitioner:someone"))

    report = only_report(chain)

    assert not report.ok and report.first_bad_seq == 3


def test_a_deleted_entry_is_found_where_it_was():
    chain = build_chain(5)
    del chain[1]

    assert only_report(chain).first_bad_seq == 2


def test_two_swapped_entries_are_found_at_the_first_of_them():
    chain = build_chain(5)
    # The forger swaps their places in the chain (their seq), leaving each entry as it was.
    chain[2], chain[3] = (
        replace(chain[3], entry=replace(chain[3].entry, seq=3)),
        replace(chain[2], entry=replace(chain[2].entry, seq=4)),
    )

    assert only_report(chain).first_bad_seq == 3


def test_a_forged_entry_inserted_with_a_correct_hash_is_found_where_it_was_inserted():
    chain = build_chain(5)
    forged = relinked(chain[1].entry, chain[1].hash, 3)
    renumbered = [replace(s, entry=replace(s.entry, seq=s.entry.seq + 1)) for s in chain[2:]]

    report = only_report([*chain[:2], forged, *renumbered])

    assert report.first_bad_seq == 3 and "inserted" in (report.problem or "")


def test_a_rewritten_tail_is_found_only_against_the_signed_checkpoint():
    chain = build_chain(5)
    signed = {(TOPIC, 0): ChainHead(TOPIC, 0, 5, chain[4].hash)}
    rewritten = chain[:2]
    for original in chain[2:]:
        edited = replace(original.entry, purpose="HPAYMT")
        rewritten.append(relinked(edited, rewritten[-1].hash, original.entry.seq))

    assert only_report(rewritten).ok
    assert not only_report(rewritten, signed).ok
    assert only_report(chain, signed).ok


def test_a_signed_chain_with_entries_missing_at_its_end_fails():
    chain = build_chain(5)
    signed = {(TOPIC, 0): ChainHead(TOPIC, 0, 5, chain[4].hash)}

    report = only_report(chain[:3], signed)

    assert not report.ok and report.first_bad_seq == 4


def test_each_partition_is_its_own_chain():
    reports = check_chains([*build_chain(2, partition=0), *build_chain(3, partition=1)])

    assert [(r.partition, r.entries, r.ok) for r in reports] == [(0, 2, True), (1, 3, True)]


@pytest.mark.parametrize(
    "event",
    [
        access(
            "p-1",
            actor="practitioner:dr-er",
            break_glass_reason="other",
            break_glass_note="key-1.bm9uY2U.c2VhbGVk",
            purpose="ETREAT",
        ),
        access("p-1", actor="practitioner:dr-x", outcome="deny"),
        consent_granted("p-1"),
        record_created("p-1"),
    ],
    ids=["break-glass", "denied", "consent", "record"],
)
def test_a_batch_links_an_entry_to_the_same_hash_as_chaining_it_alone(event):
    origin = Origin(TOPIC, 2, 40)
    head = ChainHead(TOPIC, 2, 6, build_chain(1)[0].hash)
    alone = chained(entry_of(event, origin), head)

    fields = entry_fields(event, origin)
    digest = link(fields, head.seq, head.hash)

    assert digest == alone.hash
    assert fields == alone.entry.as_dict()
