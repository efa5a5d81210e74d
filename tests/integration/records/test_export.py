"""`$everything`: the chart as a FHIR Bundle of what the reader may see."""

from __future__ import annotations

import uuid

from fhir.resources.R4B.bundle import Bundle

from shared.events import TOPIC_ACCESS
from tests.conftest import bearer
from tests.integration.records.support import consent_granted, observation


def test_everything_is_a_valid_bundle_of_only_what_the_reader_may_see(records, kafka_tap, token):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    plain = records.write(author, patient, observation("8867-4"))
    records.write(author, patient, observation("44249-1", "PSY"))
    mine = records.write(bearer(token("patient", patient)), patient, observation("29463-7"))
    granted = consent_granted(patient, ("organization", "org-b"), categories=["Observation"])
    records.project(granted)
    reader = bearer(token("practitioner", "dr-b", org="org-b"))

    response = records.client.get(f"/patients/{patient}/$everything", headers=reader)

    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(response.json)
    assert bundle.type == "searchset"
    assert [e.resource.id for e in bundle.entry] == [mine, plain]
    assert bundle.total == 2
    records.publish()
    (event,) = access.events(1, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert event.short_type == "record.exported"
    assert (event.data["action"], event.data["outcome"]) == ("export", "permit")
    assert event.data["record_ids"] == [mine, plain]
    assert event.data["consent_ids"] == [granted.data["consent_id"]]
    assert event.data["reason"] == "1 record(s) withheld"


def test_the_patient_exports_the_whole_chart(records, token):
    patient = f"pat-{uuid.uuid4()}"
    author = bearer(token("practitioner", "dr-author", org="org-a"))
    written = {records.write(author, patient, observation(str(n), "PSY")) for n in range(3)}

    response = records.client.get(
        f"/patients/{patient}/$everything", headers=bearer(token("patient", patient))
    )

    bundle = Bundle.model_validate(response.json)
    assert {e.resource.id for e in bundle.entry} == written
