"""Any change to the stored trail is found: by /audit/verify, and offline in an export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from caretrail.cli import main as caretrail
from services.audit.checkpoints import sign_checkpoint
from services.audit.domain import chain_hash, entry_of
from services.audit.signing import public_pem, signing_key
from shared.db import session_factory
from shared.inbox import Origin
from tests.conftest import bearer
from tests.unit.audit.facts import access

TOPIC = "caretrail.access.v1"


@pytest.fixture
def trail(seed):
    """Six entries on one chain (partition 2) and two on another (partition 5)."""
    patient = f"p-{uuid4()}"
    seed(*[access(patient, actor=f"practitioner:dr-{n}") for n in range(6)], partition=2)
    seed(*[access(patient, actor=f"practitioner:dr-{n}") for n in range(2)], partition=5)
    return patient


def as_attacker(engine: Engine, *statements: str, **params) -> None:
    """Run SQL straight on the database, past the append-only trigger (as an attacker with
    the owner's rights would)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE entries DISABLE TRIGGER entries_append_only"))
        for statement in statements:
            conn.execute(text(statement), params)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE entries ENABLE TRIGGER entries_append_only"))


def verify(client, token) -> dict:
    response = client.get("/audit/verify", headers=bearer(token("compliance", "officer")))
    assert response.status_code == 200
    return response.json


def chain(report: dict, partition: int) -> dict:
    [found] = [p for p in report["partitions"] if p["partition"] == partition]
    return found


CHAIN = f"topic = '{TOPIC}' AND partition = 2"


def edit_a_field(engine: Engine) -> None:
    as_attacker(engine, f"UPDATE entries SET org = 'org-evil' WHERE {CHAIN} AND seq = 4")


def delete_an_entry(engine: Engine) -> None:
    as_attacker(engine, f"DELETE FROM entries WHERE {CHAIN} AND seq = 3")


def swap_two_entries(engine: Engine) -> None:
    as_attacker(
        engine,
        f"UPDATE entries SET seq = -1 WHERE {CHAIN} AND seq = 2",
        f"UPDATE entries SET seq = 2 WHERE {CHAIN} AND seq = 3",
        f"UPDATE entries SET seq = 3 WHERE {CHAIN} AND seq = -1",
    )


def insert_a_forged_entry(engine: Engine) -> None:
    """Insert at seq 4 an entry whose hash is right for its place, shifting the rest on."""
    with engine.connect() as conn:
        prev_hash = conn.execute(
            text(f"SELECT hash FROM entries WHERE {CHAIN} AND seq = 3")
        ).scalar_one()
    forged = entry_of(access("p-x", actor="practitioner:forger"), Origin(TOPIC, 2, 99))
    forged = replace(forged, seq=4)
    as_attacker(
        engine,
        f"UPDATE entries SET seq = -seq WHERE {CHAIN} AND seq >= 4",
        f"UPDATE entries SET seq = 1 - seq WHERE {CHAIN} AND seq < 0",
        "INSERT INTO entries (event_id, type, time, actor, role, org, patient, action, "
        "outcome, purpose, record_ids, categories, consent_ids, break_glass_reason, source, "
        'trace_id, topic, partition, "offset", seq, prev_hash, hash) VALUES (:id, :type, '
        ":time, :actor, 'practitioner', NULL, :patient, 'read', 'permit', 'TREAT', "
        "'[\"rec-1\"]', '[\"Observation\"]', '[]', NULL, 'records', NULL, :topic, 2, 99, 4, "
        ":prev, :hash)",
        id=forged.event_id,
        type=forged.type,
        time=forged.time.replace("Z", "+00:00"),
        actor=forged.actor,
        patient=forged.patient,
        topic=TOPIC,
        prev=prev_hash,
        hash=chain_hash(prev_hash, forged),
    )


@pytest.mark.parametrize(
    ("tamper", "first_bad_seq"),
    [(edit_a_field, 4), (delete_an_entry, 3), (swap_two_entries, 2), (insert_a_forged_entry, 4)],
)
def test_verify_finds_each_kind_of_tampering_at_its_position(
    client, token, engine, trail, tamper: Callable[[Engine], None], first_bad_seq: int
):
    assert verify(client, token)["ok"]

    tamper(engine)
    report = verify(client, token)

    assert not report["ok"]
    assert chain(report, 2)["first_bad_seq"] == first_bad_seq
    assert not chain(report, 2)["ok"]
    assert chain(report, 5)["ok"] and chain(report, 5)["entries"] == 2


def test_an_untouched_trail_verifies_against_its_signed_checkpoint(
    client, token, engine, settings, trail
):
    sign_checkpoint(session_factory(engine), signing_key(settings))

    report = verify(client, token)

    assert report["ok"] and report["checkpoint"]["signature_ok"]
    assert [
        (p["partition"], p["entries"], p["first_bad_seq"])
        for p in report["partitions"]
        if p["topic"] == TOPIC
    ] == [(2, 6, None), (5, 2, None)]


def test_the_latest_checkpoint_is_served_with_its_public_key(
    client, token, engine, settings, trail
):
    sign_checkpoint(session_factory(engine), signing_key(settings))

    body = client.get(
        "/audit/checkpoints/latest", headers=bearer(token("compliance", "officer"))
    ).json

    assert body["algorithm"] == "Ed25519" and "BEGIN PUBLIC KEY" in body["public_key"]
    assert [(h["partition"], h["seq"]) for h in body["heads"]] == [(2, 6), (5, 2)]


# The trigger is PostgreSQL's; SQLite is the one-machine mode.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_database_refuses_to_update_or_delete_an_entry(engine, trail):
    for statement in ("UPDATE entries SET org = 'x'", "DELETE FROM entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))


@pytest.fixture
def cli_env(monkeypatch, settings, key_file):
    monkeypatch.setenv("CARETRAIL_AUDIT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CARETRAIL_AUDIT_SIGNING_KEY_FILE", str(key_file))


def test_an_export_verifies_offline_and_fails_on_an_edited_byte(
    cli_env, engine, settings, trail, tmp_path: Path, capsys
):
    sign_checkpoint(session_factory(engine), signing_key(settings))
    export, public_key = tmp_path / "trail.jsonl", tmp_path / "audit.pub.pem"
    public_key.write_text(public_pem(signing_key(settings)))

    assert caretrail(["audit", "export", "--out", str(export)]) == 0
    assert (
        caretrail(["audit", "verify", "--export", str(export), "--public-key", str(public_key)])
        == 0
    )
    assert "valid: 8 entries in 2 chains" in capsys.readouterr().out

    data = export.read_bytes()
    position = data.index(b"practitioner:dr-3") + len("practitioner:dr-")
    export.write_bytes(data[:position] + b"4" + data[position + 1 :])
    assert (
        caretrail(["audit", "verify", "--export", str(export), "--public-key", str(public_key)])
        == 1
    )
    err = capsys.readouterr().err
    assert "NOT VALID" in err and "line 5" in err and "seq 4" in err
