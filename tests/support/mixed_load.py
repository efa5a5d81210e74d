"""A steady mixed load on a running system, every request kept with what it answered.

Practitioners of org B read the charts of a few patients under their consent (a permit or a
denial, each one access fact), a practitioner of org A writes to them, and each patient grants
and revokes org B's consent. Every request carries a trace id of its own: the fact it causes
carries it too (`traceparent`), which is how `tests/support/reconcile.py` finds it on Kafka.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from caretrail.demo import observation
from caretrail.people import Person
from shared.config import Settings

WRITER = Person("dr-a", "Dr Lee", "practitioner", "dr-lee", org="org-a")
READER = Person("dr-b", "Dr Kim", "practitioner", "dr-kim", org="org-b")


@dataclass(frozen=True)
class Request:
    kind: str  # read | write | grant | revoke
    patient: str
    trace_id: str
    status: int | None  # None: no answer at all (refused, reset, timed out)
    at: float  # time.monotonic() when it was answered or given up

    @property
    def answered(self) -> bool:
        """Whether the system answered it as done, which promises its fact: a read answered at
        all (a permit or a refusal, each a fact), or a change that succeeded. A 5xx or no
        answer promises nothing either way."""
        if self.kind == "read":
            return self.status in (200, 403)
        return self.status is not None and 200 <= self.status < 300


def grant_body() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "grantee": {"type": "organization", "id": "org-b"},
        "actions": ["read"],
        "categories": ["Observation"],
        "security_labels": [],
        "purposes": ["TREAT"],
        "period": {"start": now.isoformat(), "end": (now + timedelta(days=30)).isoformat()},
    }


class MixedLoad:
    """`rate` requests a second over `threads` threads, each with patients of its own (so one
    patient's consent changes are in order), until `stop`."""

    def __init__(
        self,
        urls: dict[str, str],
        settings: Settings,
        *,
        name: str,
        patients: int = 4,
        rate: float = 6.0,
        threads: int = 2,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.urls = urls
        self.patients = [f"pat-{name}-{i}-{uuid.uuid4().hex[:6]}" for i in range(patients)]
        self.requests: list[Request] = []
        self._tokens = {
            "writer": WRITER.token(settings),
            "reader": READER.token(settings),
            **{p: Person(p, p, "patient", p, patient=p).token(settings) for p in self.patients},
        }
        self._threads = threads
        self._interval = threads / rate
        self._timeout = timeout_seconds
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> MixedLoad:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        for n in range(self._threads):
            mine = self.patients[n :: self._threads]
            thread = threading.Thread(target=self._run, args=(mine,), name=f"load-{n}")
            self._workers.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join()

    def answered_since(self, moment: float, kind: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.answered and r.at >= moment and (kind is None or r.kind == kind)
            )

    def _run(self, patients: list[str]) -> None:
        http = requests.Session()
        consents: dict[str, str | None] = {}
        for patient in patients:  # every chart has a record and a consent to read under
            self._write(http, patient)
            consents[patient] = self._grant(http, patient)
        rng = random.Random()
        while not self._stop.wait(self._interval * rng.uniform(0.5, 1.5)):
            patient = rng.choice(patients)
            roll = rng.random()
            if roll < 0.6:
                self._read(http, patient)
            elif roll < 0.8:
                self._write(http, patient)
            elif consents[patient] is None:
                consents[patient] = self._grant(http, patient)
            elif self._revoke(http, patient, consents[patient]):
                consents[patient] = None

    def read_once(self) -> None:
        """One more read, beside the load's own (a burst for a fault to strike)."""
        self._read(requests.Session(), random.choice(self.patients))

    def _read(self, http: requests.Session, patient: str) -> None:
        url = f"{self.urls['records']}/patients/{patient}/records"
        self._call(http, "read", patient, "reader", "GET", url)

    def _write(self, http: requests.Session, patient: str) -> None:
        url = f"{self.urls['records']}/patients/{patient}/records"
        body = observation("8867-4", "Heart rate", value=60 + random.randint(0, 40), unit="/min")
        self._call(http, "write", patient, "writer", "POST", url, json=body)

    def _grant(self, http: requests.Session, patient: str) -> str | None:
        url = f"{self.urls['consent']}/patients/{patient}/consents"
        answer = self._call(http, "grant", patient, patient, "POST", url, json=grant_body())
        if answer is None or answer.status_code != 201:
            return None
        return str(answer.json()["id"])

    def _revoke(self, http: requests.Session, patient: str, consent_id: str | None) -> bool:
        url = f"{self.urls['consent']}/consents/{consent_id}/revoke"
        answer = self._call(http, "revoke", patient, patient, "POST", url)
        return answer is not None and answer.status_code == 200

    def _call(
        self,
        http: requests.Session,
        kind: str,
        patient: str,
        who: str,
        method: str,
        url: str,
        **kwargs: Any,
    ) -> requests.Response | None:
        trace_id = uuid.uuid4().hex
        headers = {
            "Authorization": f"Bearer {self._tokens[who]}",
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        }
        try:
            answer: requests.Response | None = http.request(
                method, url, headers=headers, timeout=self._timeout, **kwargs
            )
        except requests.RequestException:
            answer = None
        status = answer.status_code if answer is not None else None
        with self._lock:
            self.requests.append(Request(kind, patient, trace_id, status, time.monotonic()))
        return answer
