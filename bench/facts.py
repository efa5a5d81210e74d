"""How long a fact takes to travel: read answered → audit entry queryable → notification in the
inbox, under a steady background load; and a revocation → the first refused read."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from bench.data import Dataset, Patient

# A probe's round asks audit, then notify, then sleeps POLL_SECONDS: shorter would make the
# probes a load of their own (rounds of 5 ms asked for hundreds of queries a second).
POLL_SECONDS = 0.025


@dataclass
class Travel:
    audit_ms: list[float] = field(default_factory=list)
    inbox_ms: list[float] = field(default_factory=list)
    lost: int = 0  # probes not seen within the timeout
    skipped: int = 0  # probes not started within the scenario's time budget
    background_per_second: float = 0.0


class Background:
    """Reads at a steady rate (default 200 req/s) from a few threads, until stopped."""

    def __init__(self, urls: dict[str, str], data: Dataset, rate: float, clients: int = 4):
        self._url = urls["records"]
        self._paths = data.read_paths()
        self._token = data.tokens["reader"]
        self._interval = clients / rate
        self._clients = clients
        self._stop = threading.Event()
        self._sent = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Background:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.per_second = self._sent / (time.monotonic() - self._started)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self._token}"}
        # Each client is offset by its share of the interval, then keeps a fixed schedule.
        due = time.monotonic() + self._interval * n / self._clients
        while not self._stop.is_set():
            self._stop.wait(max(0.0, due - time.monotonic()))
            session.get(f"{self._url}{rng.choice(self._paths)}", headers=headers, timeout=30)
            with self._lock:
                self._sent += 1
            due += self._interval


def fact_travel(
    urls: dict[str, str],
    data: Dataset,
    rate: float = 200,
    timeout_seconds: float = 10.0,
    budget_seconds: float = 120.0,
) -> Travel:
    """Read each probe patient's record once, then poll the audit trail and the patient's
    inbox until that read shows in each, under `rate` background reads per second. Probes
    not started within `budget_seconds` are skipped: a system that falls behind would
    otherwise keep the bench for an hour."""
    travel = Travel()
    deadline = time.monotonic() + budget_seconds

    def probe(patient: Patient) -> tuple[float | None, float | None] | None:
        if time.monotonic() > deadline:
            return None
        return _probe(urls, data, patient, timeout_seconds)

    with Background(urls, data, rate) as background:
        time.sleep(1.0)  # let the background settle into its schedule
        with ThreadPoolExecutor(2) as pool:
            for result in pool.map(probe, data.probes):
                if result is None:
                    travel.skipped += 1
                    continue
                audit_ms, inbox_ms = result
                if audit_ms is None or inbox_ms is None:
                    travel.lost += 1
                if audit_ms is not None:
                    travel.audit_ms.append(audit_ms)
                if inbox_ms is not None:
                    travel.inbox_ms.append(inbox_ms)
    travel.background_per_second = background.per_second
    return travel


def _probe(
    urls: dict[str, str], data: Dataset, patient: Patient, timeout_seconds: float
) -> tuple[float | None, float | None]:
    session = requests.Session()
    audit = (
        f"{urls['audit']}/audit/events",
        {"patient": patient.id, "type": "record.accessed", "limit": 100},
        {"Authorization": f"Bearer {data.tokens['compliance']}"},
    )
    inbox = (
        f"{urls['notify']}/patients/{patient.id}/notifications",
        {"limit": 100},
        {"Authorization": f"Bearer {patient.token}"},
    )
    # The patient was read before (by the loader, by an earlier pass): wait for one more.
    before = {"audit": _audit_reads(session, *audit), "inbox": _inbox_reads(session, *inbox)}
    read = session.get(
        f"{urls['records']}/patients/{patient.id}/records/{patient.visible[0]}",
        headers={"Authorization": f"Bearer {data.tokens['reader']}"},
        timeout=30,
    )
    answered = time.monotonic()
    if read.status_code != 200:
        raise RuntimeError(f"probe read of {patient.id}: {read.status_code} {read.text[:200]}")
    seen: dict[str, float] = {}
    deadline = answered + timeout_seconds
    while len(seen) < 2 and time.monotonic() < deadline:
        if "audit" not in seen and _audit_reads(session, *audit) > before["audit"]:
            seen["audit"] = (time.monotonic() - answered) * 1000
        if "inbox" not in seen and _inbox_reads(session, *inbox) > before["inbox"]:
            seen["inbox"] = (time.monotonic() - answered) * 1000
        time.sleep(POLL_SECONDS)
    return seen.get("audit"), seen.get("inbox")


def _audit_reads(session: requests.Session, url: str, params: dict, headers: dict) -> int:
    return len(session.get(url, params=params, headers=headers, timeout=30).json()["items"])


def _inbox_reads(session: requests.Session, url: str, params: dict, headers: dict) -> int:
    """Reads the inbox tells of: one per notification, or the count of the reads folded into
    one (issue 12: a reader's reads within a window are one notification that counts them)."""
    items = session.get(url, params=params, headers=headers, timeout=30).json()["items"]
    return sum(
        int(i.get("details", {}).get("requests", 1))
        for i in items
        if i["kind"] == "record-accessed"
    )


def revocation_to_refusal(
    urls: dict[str, str], data: Dataset, timeout_seconds: float = 30.0, clients: int = 4
) -> list[float]:
    """For each revocation patient: revoke their consent, then read until refused; answer the
    ms from the revocation's answer to the first 403."""

    def one(patient: Patient) -> float:
        session = requests.Session()
        revoked = session.post(
            f"{urls['consent']}/consents/{patient.consent}/revoke",
            headers={"Authorization": f"Bearer {patient.token}"},
            timeout=30,
        )
        answered = time.monotonic()
        if revoked.status_code != 200:
            raise RuntimeError(f"revoke {patient.consent}: {revoked.status_code}")
        path = f"{urls['records']}/patients/{patient.id}/records/{patient.visible[0]}"
        headers = {"Authorization": f"Bearer {data.tokens['reader']}"}
        while session.get(path, headers=headers, timeout=30).status_code != 403:
            if time.monotonic() - answered > timeout_seconds:
                raise TimeoutError(f"revocation of {patient.consent} never enforced")
            time.sleep(POLL_SECONDS)
        return (time.monotonic() - answered) * 1000

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, data.revocations))
