"""Real FHIR clients (fhirpy, the SMART `fhirclient`) against records served over HTTP."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation as SmartObservation
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, MultipleResourcesFound
from sqlalchemy import Engine
from werkzeug.serving import BaseWSGIServer, make_server

from services.records.app import create_app
from services.records.store import metadata
from shared.auth import mint_token
from shared.broker import make_producer
from shared.config import Settings
from shared.db import create_schema, session_factory
from shared.events import TOPIC_ACCESS
from shared.outbox import OutboxRelay
from tests.integration.records.support import MASTER_KEY, Records

LAB_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass
class Served:
    """records over HTTP on a free port, and the harness to publish what it wrote."""

    base: str
    records: Records
    settings: Settings

    def client(self, role: str, sub: str, **claims: Any) -> SyncFHIRClient:
        extra = claims.pop("headers", None)
        token = mint_token(self.settings, role=role, sub=sub, **claims)
        return SyncFHIRClient(self.base, authorization=f"Bearer {token}", extra_headers=extra)

    def token(self, role: str, sub: str, **claims: Any) -> str:
        return mint_token(self.settings, role=role, sub=sub, **claims)


@pytest.fixture
def served(database_url: str, kafka_bootstrap: str) -> Iterator[Served]:
    settings = Settings.from_env(
        "records",
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        master_key=MASTER_KEY,
        smart_authorization_endpoint="https://idp.example/authorize",
        smart_token_endpoint="https://idp.example/token",
    )
    app = create_app(settings)
    engine: Engine = app.extensions["records.engine"]
    create_schema(engine, metadata)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    producer = make_producer(kafka_bootstrap)
    records = Records(
        app.test_client(), engine, session_factory(engine), OutboxRelay(engine, producer)
    )
    yield Served(f"http://127.0.0.1:{server.port}/fhir", records, settings)
    server.shutdown()
    thread.join(timeout=5)
    producer.close(timeout=5)
    engine.dispose()


def validates(resource: Any) -> None:
    """Each resource a client got back is valid R4 (R4B models) as serialised."""
    data = resource.serialize() if hasattr(resource, "serialize") else resource
    if data["resourceType"] == "Bundle":
        Bundle.model_validate(data)
    else:
        get_fhir_model_class(data["resourceType"]).model_validate(data)


def observation(patient: str, day: int, kind: str = "laboratory") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": LAB_SYSTEM, "code": kind}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2024-03-{day:02d}",
        "valueQuantity": {"value": 6.1, "unit": "%"},
    }


def test_a_fhirpy_session_creates_reads_pages_updates_and_is_audited(served, kafka_tap):
    access = kafka_tap(TOPIC_ACCESS)
    patient = f"pat-{uuid.uuid4()}"
    lee = served.client("practitioner", "dr-lee", org="org-a")
    alice = served.client("patient", "alice", patient=patient)

    # create: a patient writes her own Patient (PHR), a practitioner labs (EHR)
    me = alice.resource("Patient", id=patient, gender="female")
    me.save()
    created = [lee.resource("Observation", **observation(patient, day)) for day in range(1, 6)]
    for resource in created:
        resource.save()
    assert me.id == patient and all(r.id and r["meta"]["versionId"] == "1" for r in created)

    # read, and search with paging to the end (two to a page)
    read = lee.reference("Observation", created[0].id).to_resource()
    assert read["valueQuantity"]["value"] == 6.1
    found = lee.resources("Observation").search(patient=patient).sort("-date").limit(2)
    everyone = found.fetch_all()
    assert [r.id for r in everyone] == [r.id for r in reversed(created)]

    # update, then an update on a stale version
    read["status"] = "amended"
    read.save()
    assert read["meta"]["versionId"] == "2"
    stale = served.client("practitioner", "dr-lee", org="org-a", headers={"If-Match": 'W/"1"'})
    with pytest.raises(MultipleResourcesFound) as refused:  # fhirpy's name for a 412
        stale.resource("Observation", **{**observation(patient, 1), "id": read.id}).save()
    OperationOutcome.model_validate_json(str(refused.value))

    # $everything, the patient's own chart, every page
    bundle = alice.execute(f"Patient/{patient}/$everything", method="get", params={"_count": 3})
    pages = [bundle]
    while next_link := next((x["url"] for x in pages[-1]["link"] if x["relation"] == "next"), None):
        pages.append(alice.execute(next_link, method="get"))
    kinds = sorted(e["resource"]["resourceType"] for p in pages for e in p["entry"])
    assert kinds == ["Observation"] * 5 + ["Patient"]

    # a forbidden read: another organisation without consent
    kim = served.client("practitioner", "dr-kim", org="org-b")
    with pytest.raises(ForbiddenError) as forbidden:
        kim.reference("Observation", created[0].id).to_resource()
    outcome = OperationOutcome.model_validate_json(str(forbidden.value))
    assert outcome.issue[0].code == "forbidden"

    for resource in [me, *created, read, *everyone, *pages]:
        validates(resource)
    served.records.publish()
    facts = access.events(7, where=lambda e: e.subject == patient, settle_seconds=0.5)
    assert [(e.data["action"], e.data["outcome"]) for e in facts] == [
        ("read", "permit"),
        ("search", "permit"),
        ("search", "permit"),
        ("search", "permit"),
        ("export", "permit"),
        ("export", "permit"),
        ("read", "deny"),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_smart_fhirclient_reads_the_capability_statement_and_a_resource(served):
    patient = f"pat-{uuid.uuid4()}"
    lee = served.client("practitioner", "dr-lee", org="org-a")
    written = lee.resource("Observation", **observation(patient, 1))
    written.save()
    smart = smart_client.FHIRClient(
        settings={"app_id": "caretrail-test", "api_base": served.base + "/"}
    )

    smart.prepare()
    smart.server.auth.access_token = served.token("practitioner", "dr-lee", org="org-a")
    read = SmartObservation.read(written.id, smart.server)

    state = smart.server.auth.state
    assert (state["authorize_uri"], state["token_uri"]) == (
        "https://idp.example/authorize",
        "https://idp.example/token",
    )
    CapabilityStatement.model_validate(smart.server.capabilityStatement.as_json())
    assert read.valueQuantity.value == 6.1
    validates(read.as_json())
