"""The fault suite's system: a 3-node Kafka cluster, PostgreSQL, and every service's web app
and workers as real processes, started once for the suite; a steady mixed load per scenario,
then a reconcile of every request it made (tests/support/reconcile.py)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from caretrail.kafka_cluster import KafkaCluster
from caretrail.kafka_server import QUICK_START_JAVA, free_port
from caretrail.people import Person
from caretrail.postgres_server import Cluster, start_cluster
from caretrail.system import SERVICES, System
from shared.config import Settings
from tests.support.mixed_load import MixedLoad
from tests.support.reconcile import Reconciliation, outbox_counters, reconcile, settle, table

SETTINGS = Settings.from_env("faults")
RESULTS: list[Reconciliation] = []


class Faults:
    """The running system, and how a scenario loads it and accounts for its requests."""

    def __init__(self, cluster: KafkaCluster, postgres: Cluster, system: System) -> None:
        self.cluster = cluster
        self.postgres = postgres
        self.system = system
        self.urls = {service: system.url(service) for service in SERVICES}

    @property
    def db_urls(self) -> dict[str, str]:
        return {s: self.system.extra_env[f"CARETRAIL_{s.upper()}_DATABASE_URL"] for s in SERVICES}

    def load(self, name: str, *, rate: float = 6.0) -> MixedLoad:
        return MixedLoad(self.urls, SETTINGS, name=name, rate=rate)

    def pending_facts(self, service: str) -> int:
        """Rows of `service`'s outbox not yet on Kafka."""
        return outbox_counters({service: self.db_urls[service]}, (service,))[0]()

    def signal(self, name: str, sig: int) -> None:
        """Send `sig` to a process of the system (SIGSTOP, SIGCONT) without waiting on it."""
        os.killpg(self.system.processes[name].pid, sig)

    def kill_web_worker(self, service: str) -> None:
        """SIGKILL one gunicorn worker of `service` (its master starts another)."""
        master = psutil.Process(self.system.processes[f"{service}-web"].pid)
        os.kill(master.children()[0].pid, signal.SIGKILL)

    def reconcile(self, scenario: str, load: MixedLoad, healed_at: float) -> Reconciliation:
        """Wait until the system settled after the fault healed at `healed_at`, then account
        for every request of `load`; the result joins the table printed at the end."""
        settle(self.cluster.bootstrap, self.db_urls, timeout_seconds=60)
        result = reconcile(
            scenario,
            load.requests,
            bootstrap=self.cluster.bootstrap,
            db_urls=self.db_urls,
            audit_url=self.urls["audit"],
            compliance_token=Person("c", "c", "compliance", "cora").token(SETTINGS),
            recover_seconds=time.monotonic() - healed_at,
        )
        RESULTS.append(result)
        return result


@pytest.fixture(scope="session")
def faults() -> Iterator[Faults]:
    # Not under pytest's basetemp, which other sessions rotate away while this one runs.
    home = Path(tempfile.mkdtemp(prefix="caretrail-faults-"))
    cluster = KafkaCluster(home / "kafka", java_options=QUICK_START_JAVA)
    cluster.start()
    # in a temp dir of its own: the postgres user may not enter pytest's
    postgres = start_cluster(free_port())
    system = System(
        home / "system",
        db="postgres",
        bootstrap=cluster.bootstrap,
        cluster=postgres,
        web_workers=2,  # one gunicorn worker may die while the other answers
        extra_env={"CARETRAIL_LOG_LEVEL": "WARNING"},
    )
    try:
        system.start()
        yield Faults(cluster, postgres, system)
    finally:
        system.stop()
        cluster.stop(timeout_seconds=5)
        shutil.rmtree(home, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.write_sep("-", "fault suite: reconcile")
        terminalreporter.write_line(table(RESULTS))
