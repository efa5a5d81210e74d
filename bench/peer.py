"""A FHIR server to measure caretrail against (issue 12: HAPI FHIR from ../shared/peers/hapi.sh),
loaded with the bench's data shape through FHIR REST and driven by the same wrk loads.

The peer does less per request than caretrail (no consent decision, no access fact, no audit
or notify downstream): the ratio says what that costs.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.data import Sizes, resource
from bench.wrk import Load

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class PeerData:
    """What was loaded into the peer: its base, its name, the Observations and patients."""

    base_url: str  # e.g. http://127.0.0.1:8090/fhir
    software: str  # from its CapabilityStatement, e.g. "HAPI FHIR Server 8.8.0"
    observations: list[str]  # ids of the Observations of the reading patients
    patients: list[str]  # ids of the reading patients
    chart: str  # id of the patient with the big chart

    @property
    def _origin_and_base(self) -> tuple[str, str]:
        # wrk sends each path as given: the base's own path goes into every path.
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")

    def read_load(self) -> Load:
        """`GET /Observation/{id}` of a random Observation of the reading patients."""
        origin, base = self._origin_and_base
        return Load(origin, [f"{base}/Observation/{o}" for o in self.observations], "none")

    def search_load(self, count: int = 20) -> Load:
        """`GET /Observation?patient=X&_count=20` over the big chart: its first page."""
        origin, base = self._origin_and_base
        return Load(origin, [f"{base}/Observation?patient={self.chart}&_count={count}"], "none")

    def create_load(self, seed: int) -> Load:
        """`POST /Observation` of the same body caretrail's write run sends, with a subject."""
        origin, base = self._origin_and_base
        body = {
            **resource(random.Random(seed)),
            "subject": {"reference": f"Patient/{self.patients[0]}"},
        }
        return Load(origin, [f"{base}/Observation"], "none", "POST", json.dumps(body).encode())


def load_peer(base_url: str, sizes: Sizes, seed: int) -> PeerData:
    """Create the reading patients and the big chart in the peer, with as many Observations as
    caretrail holds, drawn the same way (POST Patient, then POST Observation with subject)."""
    base_url = base_url.rstrip("/")
    rng = random.Random(seed)
    client = _Client(base_url)
    software = client.software()
    reading = _parallel(
        lambda _: client.create({"resourceType": "Patient"}), range(sizes.reading_patients)
    )
    chart = client.create({"resourceType": "Patient"})
    writes = [(p, resource(rng)) for p in reading for _ in range(sizes.records_per_patient)]
    writes += [
        (chart, resource(rng, sensitive=rng.random() < sizes.chart_sensitive_share))
        for _ in range(sizes.chart_records)
    ]
    ids = _parallel(
        lambda w: client.create({**w[1], "subject": {"reference": f"Patient/{w[0]}"}}), writes
    )
    return PeerData(
        base_url, software, ids[: len(reading) * sizes.records_per_patient], reading, chart
    )


class _Client:
    """FHIR REST calls, one requests.Session per loader thread (a Session is not thread-safe)."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url
        self._local = threading.local()

    @property
    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def software(self) -> str:
        answer = self._session.get(
            f"{self._base}/metadata", headers={"Accept": FHIR_JSON}, timeout=60
        )
        answer.raise_for_status()
        software = answer.json().get("software", {})
        return (
            " ".join(filter(None, (software.get("name"), software.get("version")))) or "FHIR peer"
        )

    def create(self, body: dict[str, Any]) -> str:
        answer = self._session.post(
            f"{self._base}/{body['resourceType']}",
            data=json.dumps(body),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
            timeout=60,
        )
        if answer.status_code != 201:
            raise RuntimeError(
                f"peer: POST {body['resourceType']}: {answer.status_code} {answer.text[:300]}"
            )
        return str(answer.json()["id"])


def _parallel(work: Callable[[Any], str], items: Any, clients: int = 8) -> list[str]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(work, items))
