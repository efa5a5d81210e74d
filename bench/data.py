"""Synthetic patients, FHIR resources and consents, loaded through the public HTTP APIs.

Everything is drawn from one `random.Random(seed)`: the same seed gives the same patients,
the same resources and the same consents (server-made ids and times aside).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from caretrail.demo import observation
from caretrail.people import Person
from shared.config import Settings

# Authors write for org A; the reader reads for org B under the patients' consents.
AUTHOR = Person("author", "Dr Lee (org A)", "practitioner", "dr-lee", org="org-a")
READER = Person("reader", "Dr Kim (org B)", "practitioner", "dr-kim", org="org-b")
COMPLIANCE = Person("compliance", "Cora", "compliance", "cora")

VITALS = (
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("8310-5", "Body temperature", "Cel", 36, 39),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("4548-4", "Hemoglobin A1c", "%", 4, 9),
    ("2339-0", "Glucose", "mg/dL", 70, 180),
)
SENSITIVE = ("PSY", "SUD", "HIV")


def resource(rng: random.Random, sensitive: bool = False) -> dict[str, Any]:
    """A FHIR Observation with plausible values, labelled sensitive when asked."""
    code, display, unit, low, high = rng.choice(VITALS)
    value = round(rng.uniform(low, high), 1)
    labels = [rng.choice(SENSITIVE)] if sensitive else None
    return observation(code, display, value=value, unit=unit, security=labels)


def consent_body(
    grantee_org: str = "org-b", labels: Iterable[str] = (), days: int = 30
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "grantee": {"type": "organization", "id": grantee_org},
        "actions": ["read"],
        "categories": ["Observation"],
        "security_labels": list(labels),
        "purposes": ["TREAT"],
        "period": {
            "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(days=days)).isoformat(),
        },
    }


@dataclass
class Patient:
    id: str
    token: str
    records: list[str] = field(default_factory=list)
    visible: list[str] = field(default_factory=list)  # records without a sensitive label
    consent: str | None = None


@dataclass
class Dataset:
    """What was loaded: patients by purpose and the tokens that read and write them."""

    reading: list[Patient]  # a few records each, readable by the reader under consent
    chart: Patient  # one big chart, some of it sensitive and hidden by its consent
    probes: list[Patient]  # one record each, for the fact-latency probes
    revocations: list[Patient]  # one record each, a consent to revoke
    tokens: dict[str, str]

    def read_paths(self) -> list[str]:
        return [f"/patients/{p.id}/records/{r}" for p in self.reading for r in p.records]


@dataclass(frozen=True)
class Sizes:
    reading_patients: int = 100
    records_per_patient: int = 5
    chart_records: int = 200
    chart_sensitive_share: float = 0.2
    probes: int = 100
    revocations: int = 200


class Api:
    """Calls to the running system as one person, failing loudly on a surprise."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.session = requests.Session()

    def call(
        self, token: str, method: str, service: str, path: str, expect: int = 200, **kw: Any
    ) -> Any:
        response = self.session.request(
            method,
            f"{self.urls[service]}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kw,
        )
        if response.status_code != expect:
            raise RuntimeError(
                f"{method} {path}: expected {expect}, got {response.status_code} "
                f"{response.text[:300]}"
            )
        return response.json()


def load(urls: dict[str, str], settings: Settings, sizes: Sizes, seed: int) -> Dataset:
    """Write every patient's records and consents through the APIs, then wait until each
    consent is enforced by records (it travels through Kafka)."""
    rng = random.Random(seed)
    tokens = {p.key: p.token(settings) for p in (AUTHOR, READER, COMPLIANCE)}

    def patient(kind: str, n: int) -> Patient:
        pid = f"bench-{seed}-{kind}-{n}"
        return Patient(pid, Person(pid, pid, "patient", pid, patient=pid).token(settings))

    reading = [patient("r", n) for n in range(sizes.reading_patients)]
    chart = patient("chart", 0)
    probes = [patient("probe", n) for n in range(sizes.probes)]
    revocations = [patient("revoke", n) for n in range(sizes.revocations)]

    # (patient, resource) pairs in a seeded order, written by 8 clients at once.
    writes = [(p, resource(rng)) for p in reading for _ in range(sizes.records_per_patient)]
    writes += [
        (chart, resource(rng, sensitive=rng.random() < sizes.chart_sensitive_share))
        for _ in range(sizes.chart_records)
    ]
    writes += [(p, resource(rng)) for p in (*probes, *revocations)]
    _parallel(lambda w: _write(urls, tokens["author"], *w), writes)
    _parallel(lambda p: _grant(urls, p), [*reading, chart, *probes, *revocations])
    everyone = [*reading, chart, *probes, *revocations]
    _parallel(lambda p: _until_enforced(urls, tokens["reader"], p), everyone)
    return Dataset(reading, chart, probes, revocations, tokens)


_clients = threading.local()  # one Api per loader thread: a requests.Session is not thread-safe


def _api(urls: dict[str, str]) -> Api:
    if not hasattr(_clients, "api"):
        _clients.api = Api(urls)
    api: Api = _clients.api
    return api


def _parallel(work: Callable[[Any], None], items: list[Any], clients: int = 8) -> None:
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(work, items):
            pass


def _write(urls: dict[str, str], token: str, patient: Patient, body: dict[str, Any]) -> None:
    answer = _api(urls).call(
        token, "POST", "records", f"/patients/{patient.id}/records", 201, json=body
    )
    patient.records.append(answer["id"])
    if "meta" not in body:
        patient.visible.append(answer["id"])


def _grant(urls: dict[str, str], patient: Patient) -> None:
    answer = _api(urls).call(
        patient.token,
        "POST",
        "consent",
        f"/patients/{patient.id}/consents",
        201,
        json=consent_body(),
    )
    patient.consent = answer["id"]


def _until_enforced(
    urls: dict[str, str], reader_token: str, patient: Patient, timeout_seconds: float = 60.0
) -> None:
    api = _api(urls)
    path = f"{urls['records']}/patients/{patient.id}/records/{patient.visible[0]}"
    headers = {"Authorization": f"Bearer {reader_token}"}
    deadline = time.monotonic() + timeout_seconds
    while api.session.get(path, headers=headers, timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the consent of {patient.id} never reached records")
        time.sleep(0.1)
