"""Records are append-only: amendments are versions, errors are marked, nothing is deleted."""

from __future__ import annotations

import json
import uuid

from shared.events import TOPIC_RECORDS
from tests.conftest import bearer
from tests.integration.records.support import observation


def test_an_amendment_is_a_new_version_and_old_versions_stay_readable(records, kafka_tap, token):
    changes = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    record_id = records.write(author, patient, observation("8867-4"))
    path = f"/patients/{patient}/records/{record_id}"

    amended = records.client.put(path, json=observation("8480-6", "PSY"), headers=author)
    stale = records.client.put(path, json=observation("1"), headers={**author, "If-Match": 'W/"1"'})
    other_type = {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"}}
    retyped = records.client.put(path, json=other_type, headers=author)

    assert amended.status_code == 200
    assert (amended.json["version"], amended.json["security"]) == (2, ["PSY"])
    assert amended.headers["ETag"] == 'W/"2"'
    assert stale.status_code == 412
    assert retyped.status_code == 422
    current = records.client.get(path, headers=author).json
    first = records.client.get(f"{path}/versions/1", headers=author).json
    history = records.client.get(f"{path}/versions", headers=author).json
    assert current["resource"]["code"]["coding"][0]["code"] == "8480-6"
    assert current["resource"]["meta"]["versionId"] == "2"
    assert first["resource"]["code"]["coding"][0]["code"] == "8867-4"
    assert first["security"] == []
    assert [v["version"] for v in history["items"]] == [2, 1]
    paged = records.client.get(f"{path}/versions?limit=1", headers=author).json
    rest = records.client.get(
        f"{path}/versions?limit=1&cursor={paged['next_cursor']}", headers=author
    ).json
    assert [v["version"] for v in paged["items"] + rest["items"]] == [2, 1]
    assert rest["next_cursor"] is None
    missing = records.client.get(f"{path}/versions/3", headers=author)
    assert missing.status_code == 404
    by_code = records.client.get(f"/patients/{patient}/records?code=8867-4", headers=author).json[
        "items"
    ]
    assert by_code == []  # only the current version's codes are searched
    records.publish()
    events = changes.events(2, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [(e.short_type, e.data["version"]) for e in events] == [
        ("record.created", 1),
        ("record.amended", 2),
    ]
    # The amendment labelled the record PSY: the label travels sealed, never in clear.
    assert all("PSY" not in json.dumps(e.data) and "security" not in e.data for e in events)


def test_a_record_entered_in_error_is_marked_kept_and_left_out_of_lists(records, kafka_tap, token):
    changes = kafka_tap(TOPIC_RECORDS)
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    wrong = records.write(me, patient, observation("8867-4"))
    right = records.write(me, patient, observation("8480-6"))
    path = f"/patients/{patient}/records/{wrong}"

    marked = records.client.post(f"{path}/entered-in-error", headers=me)
    again = records.client.post(f"{path}/entered-in-error", headers=me)
    amend = records.client.put(path, json=observation("1"), headers=me)

    assert marked.status_code == 200 and marked.json["status"] == "entered-in-error"
    assert again.status_code == 409
    assert amend.status_code == 409
    assert records.client.get(path, headers=me).json["status"] == "entered-in-error"
    listed = records.client.get(f"/patients/{patient}/records", headers=me).json["items"]
    assert [r["id"] for r in listed] == [right]
    records.publish()
    events = changes.events(3, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [e.short_type for e in events][-1] == "record.entered-in-error"
    assert events[-1].data["record_id"] == wrong


def test_lists_are_newest_first_filtered_and_paged_with_an_opaque_cursor(records, token):
    patient = f"pat-{uuid.uuid4()}"
    me = bearer(token("patient", patient))
    written = [records.write(me, patient, observation(f"code-{n % 2}")) for n in range(5)]
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }
    condition_id = records.write(me, patient, condition)
    base = f"/patients/{patient}/records"

    pages, cursor = [], None
    while True:
        query = f"{base}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = records.client.get(query, headers=me).json
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sum(pages, []) == [condition_id, *reversed(written)]
    assert [len(p) for p in pages] == [2, 2, 2]
    only_conditions = records.client.get(f"{base}?category=Condition", headers=me).json
    assert [r["id"] for r in only_conditions["items"]] == [condition_id]
    by_code = records.client.get(f"{base}?code=code-1", headers=me).json
    assert [r["id"] for r in by_code["items"]] == [written[3], written[1]]
    by_token = records.client.get(f"{base}?code=http://snomed.info/sct|38341003", headers=me).json
    assert [r["id"] for r in by_token["items"]] == [condition_id]
    future = records.client.get(f"{base}?since=2999-01-01T00:00:00Z", headers=me).json
    assert future["items"] == []
