"""With no span exporter, a read's fact still carries the trace id of its request."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.records.store import metadata
from tests.conftest import bearer
from tests.integration.records.support import observation

outbox = metadata.tables["outbox"]


def trace_ids_of_facts(records) -> list[str]:
    with records.sessions() as session:
        rows = session.execute(
            select(outbox.c.headers).where(outbox.c.type.like("%accessed%")).order_by(outbox.c.seq)
        ).scalars()
        return [dict(headers)["ce_traceparent"].split("-")[1] for headers in rows]


def test_a_read_continues_the_callers_trace_and_each_request_has_its_own(records, token):
    doctor = bearer(token("practitioner", "dr-lee", org="org-a"))
    record_id = records.write(doctor, "pat-trace", observation())
    trace_id = uuid.uuid4().hex
    traceparent = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    path = f"/patients/pat-trace/records/{record_id}"

    assert records.client.get(path, headers={**doctor, **traceparent}).status_code == 200
    assert records.client.get(path, headers=doctor).status_code == 200
    assert records.client.get(path, headers=doctor).status_code == 200

    continued, own, other = trace_ids_of_facts(records)
    assert continued == trace_id
    assert own not in (trace_id, "0" * 32) and other not in (own, trace_id)
