"""Erasure by crypto-shredding: once the data key is gone, no copy of the content opens."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from services.records.sealing import CannotOpen, MasterKey, Sealed, record_context
from services.records.store import charts, record_versions
from services.records.store import records as record_rows
from shared.events import TOPIC_ACCESS, TOPIC_RECORDS
from tests.conftest import bearer
from tests.integration.records.support import MASTER_KEY, observation


def remaining_keys(records):
    """Every data key the service can still unwrap: all the key material that is left."""
    master = MasterKey.from_base64(MASTER_KEY)
    with records.sessions() as session:
        rows = session.execute(
            select(charts.c.patient, charts.c.key_id, charts.c.wrapped_key).where(
                charts.c.wrapped_key.is_not(None)
            )
        ).all()
    return [master.unwrap(r.patient, r.key_id, r.wrapped_key) for r in rows]


def opens_with_any(keys, sealed: Sealed, context: str) -> bool:
    for key in keys:
        try:
            key.open(sealed, context)
            return True
        except CannotOpen:
            continue
    return False


def opens(event, keys) -> bool:
    """Whether the sealed content of a record.created event opens with any of `keys`."""
    data = event.data
    context = record_context(data["patient"], data["record_id"], data["version"])
    return opens_with_any(keys, Sealed.from_event_data(data["content"]), context)


def test_after_erasure_the_patients_content_opens_nowhere_and_others_are_unaffected(
    records, kafka_tap, token
):
    changes = kafka_tap(TOPIC_RECORDS)
    access = kafka_tap(TOPIC_ACCESS)
    erased, kept = f"pat-{uuid.uuid4()}", f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    erased_ids = [records.write(author, erased, observation(str(n))) for n in range(2)]
    kept_id = records.write(author, kept, observation())
    records.publish()
    created = changes.events(
        3, where=lambda e: e.subject in (erased, kept) and e.short_type == "record.created"
    )
    assert all(opens(e, remaining_keys(records)) for e in created), "before erasure all open"

    response = records.client.delete(
        f"/patients/{erased}", headers=bearer(token("patient", erased))
    )

    assert response.status_code == 204
    keys = remaining_keys(records)
    for event in created:
        assert opens(event, keys) == (event.subject == kept), event.data["record_id"]
    with records.sessions() as session:
        rows = session.execute(
            select(record_versions, record_rows.c.patient)
            .join(record_rows, record_rows.c.id == record_versions.c.record_id)
            .where(record_rows.c.patient == erased)
        ).all()
    assert len(rows) == 2  # the rows stay, unreadable
    for row in rows:
        sealed = Sealed(row.key_id, row.nonce, row.ciphertext)
        assert not opens_with_any(keys, sealed, record_context(erased, row.record_id, 1))
    assert records.rows("record_codes", record_id=erased_ids[0]) == 0

    me = bearer(token("patient", erased))
    assert (
        records.client.get(f"/patients/{erased}/records/{erased_ids[0]}", headers=me).status_code
        == 410
    )
    assert records.client.get(f"/patients/{erased}/records", headers=me).status_code == 410
    assert (
        records.client.post(
            f"/patients/{erased}/records", json=observation(), headers=author
        ).status_code
        == 410
    )
    assert records.client.delete(f"/patients/{erased}", headers=me).status_code == 410
    other = records.client.get(f"/patients/{kept}/records/{kept_id}", headers=author)
    assert other.status_code == 200
    records.publish()
    (erasure,) = changes.events(
        1, where=lambda e: e.subject == erased and e.short_type == "patient.erased"
    )
    assert erasure.data == {"patient": erased, "erased_by": f"patient:{erased}"}
    refusals = access.events(2, where=lambda e: e.subject == erased, settle_seconds=0.5)
    assert [e.data["reason"] for e in refusals] == ["this chart was erased"] * 2


@pytest.mark.parametrize("role", ["practitioner", "compliance"])
def test_only_the_patient_or_an_admin_may_erase(records, token, role):
    patient = f"pat-{uuid.uuid4()}"
    records.write(bearer(token("patient", patient)), patient, observation())

    response = records.client.delete(
        f"/patients/{patient}", headers=bearer(token(role, "someone", org="org-a"))
    )

    assert response.status_code == 403
    assert (
        records.client.get(
            f"/patients/{patient}/records", headers=bearer(token("patient", patient))
        ).status_code
        == 200
    )
