"""Two web processes cache consents and chart keys, yet once a revocation, a grant or an
erasure is applied, no read in either process is decided on what came before."""

from __future__ import annotations

import uuid

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from services.records.app import create_app
from services.records.consumers import HANDLERS
from services.records.store import metadata
from shared.config import Settings
from shared.db import create_schema, session_factory
from shared.inbox import Origin, handle_once
from tests.conftest import bearer
from tests.integration.records.support import (
    MASTER_KEY,
    consent_ended,
    consent_granted,
    observation,
)

READER = ("organization", "org-b")


def two_processes(database_url: str) -> list:
    settings_ = Settings.from_env("records", database_url=database_url, master_key=MASTER_KEY)
    apps = [create_app(settings_) for _ in range(2)]
    create_schema(apps[0].extensions["records.engine"], metadata)
    return apps


def test_no_read_in_any_process_is_decided_on_a_stale_consent_or_key(database_url, token):
    apps = two_processes(database_url)
    clients = [app.test_client() for app in apps]
    sessions = session_factory(apps[0].extensions["records.engine"])
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    reader = bearer(token("practitioner", "dr-kim", org="org-b"))

    class Chart(RuleBasedStateMachine):
        @initialize()
        def write_a_record(self) -> None:
            self.patient = f"p-{uuid.uuid4().hex[:12]}"
            answer = clients[0].post(
                f"/patients/{self.patient}/records", json=observation(), headers=author
            )
            self.path = f"/patients/{self.patient}/records/{answer.json['id']}"
            self.active: list = []
            self.erased = False

        def apply(self, event) -> None:
            handle_once(sessions, "records", HANDLERS[event.type], event, Origin("t", 0, 0))

        @rule()
        def grant(self) -> None:
            granted = consent_granted(self.patient, READER, categories=["Observation"])
            self.apply(granted)
            self.active.append(granted)

        @rule()
        def revoke(self) -> None:
            if self.active:
                self.apply(consent_ended("consent.revoked", self.active.pop(0)))

        @rule()
        def erase(self) -> None:
            patient = bearer(token("patient", self.patient, patient=self.patient))
            answer = clients[1].delete(f"/patients/{self.patient}", headers=patient)
            assert answer.status_code == (410 if self.erased else 204)
            self.erased = True

        @invariant()
        def every_process_reads_as_the_database_now_says(self) -> None:
            expected = 410 if self.erased else 200 if self.active else 403
            for client in clients:
                assert client.get(self.path, headers=reader).status_code == expected

    Chart.TestCase.settings = settings(max_examples=12, stateful_step_count=10, deadline=None)
    Chart.TestCase().runTest()
    for app in apps:
        app.extensions["records.engine"].dispose()
