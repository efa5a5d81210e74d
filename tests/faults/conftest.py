"""The fault suite's system: a 3-node Kafka cluster, PostgreSQL, and every service's web app
and workers as real processes, started once for the suite; a steady mixed load per scenario,
then a reconcile of every request it made (tests/support/reconcile.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kafka.admin import KafkaAdminClient
from sqlalchemy import text

from caretrail.kafka_cluster import KafkaCluster
from caretrail.kafka_server import QUICK_START_JAVA, free_port
from caretrail.people import Person
from caretrail.postgres_server import Cluster, start_cluster
from caretrail.system import SERVICES, System
from shared.config import Settings
from shared.db import make_engine
from shared.kafka_access import client_options
from shared.relay_lease import LEASES
from tests.support.mixed_load import MixedLoad
from tests.support.reconcile import (
    GROUPS,
    OUTBOXES,
    Reconciliation,
    outbox_counters,
    reconcile,
    settle,
    table,
)

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

    def relay_holder(self, service: str) -> str:
        """The name of the worker whose relay holds `service`'s outbox lease now (its holder
        names the process id: shared/relay_lease.py)."""
        engine = make_engine(self.db_urls[service])
        try:
            with engine.connect() as conn:
                holder = conn.execute(
                    text(f"SELECT holder FROM {LEASES} WHERE outbox = :outbox"),
                    {"outbox": OUTBOXES[service]},
                ).scalar_one()
        finally:
            engine.dispose()
        pid = int(holder.split(":")[1])
        return next(name for name, p in self.system.processes.items() if p.pid == pid)

    def why_unsettled(self) -> str:
        """Each group as its coordinator sees it (members, their partitions, committed
        offsets), the last warnings of every worker's own code (members replaced, stalls,
        hung calls), and where each worker's threads stand now."""
        admin = KafkaAdminClient(
            bootstrap_servers=self.cluster.bootstrap.split(","), **client_options()
        )
        lines = []
        try:
            for group, info in admin.describe_groups(list(GROUPS)).items():
                lines.append(f"group {group}: {info.get('group_state')}")
                for member in info.get("members", []):
                    assigned = member.get("member_assignment") or {}
                    lines.append(f"  {member.get('client_host')} {member.get('member_id')}")
                    lines.append(f"    assigned {assigned.get('assigned_partitions')}")
                for tp, offset in sorted(admin.list_group_offsets({group: None})[group].items()):
                    lines.append(f"  committed {tp.topic}/{tp.partition} {offset.offset}")
        except Exception as err:  # noqa: BLE001 - the dumps below still help
            lines.append(f"describing the groups failed: {err!r}")
        finally:
            admin.close()
        workers = {name: p for name, p in self.system.processes.items() if "worker" in name}
        for name in workers:  # before the long dumps, which a shortened report may cut
            lines += [f"--- {name} warned", *own_warnings(self.system.home / f"{name}.log")]
        py_spy = str(Path(sys.executable).parent / "py-spy")
        for name, process in workers.items():
            dump = subprocess.run(
                [py_spy, "dump", "--pid", str(process.pid)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            lines.append(f"--- {name} (pid {process.pid})\n{dump.stdout}{dump.stderr}")
        return "\n".join(lines)

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
        try:
            settle(self.cluster.bootstrap, self.db_urls, timeout_seconds=60)
        except TimeoutError:
            print(self.why_unsettled())  # shown with the failure
            raise
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
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    # Not under pytest's basetemp, which other sessions rotate away while this one runs.
    home = Path(tempfile.mkdtemp(prefix="caretrail-faults-"))
    cluster = KafkaCluster(home / "kafka", java_options=QUICK_START_JAVA)
    cluster.start()
    # Durable (fsync, synchronous commit), as in production: a crash loses no commit. Under
    # `home` (0700 by mkdtemp), which the postgres user may not enter: a temp dir of its own.
    postgres = start_cluster(free_port(), durable=True)
    system = System(
        home / "system",
        db="postgres",
        bootstrap=cluster.bootstrap,
        cluster=postgres,
        web_workers=2,  # one gunicorn worker may die while the other answers
        worker_copies=2,  # one worker of each kind may die while the other takes over
        extra_env={"CARETRAIL_LOG_LEVEL": "WARNING"},
    )
    try:
        system.start()
        yield Faults(cluster, postgres, system)
    finally:
        system.stop()
        for node in cluster.brokers:  # its data is thrown away: no need to stop gracefully
            cluster.kill(node)
        if request.session.testsfailed:  # every process's log is there
            print(f"\nthe fault suite's system, kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def own_warnings(log: Path, last: int = 12) -> list[str]:
    """The last warnings and errors a process's own code logged (not kafka-python's)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        own = str(entry.get("logger", "")).startswith(("shared.", "services."))
        if own and entry.get("level") in ("WARNING", "ERROR"):
            found.append(f"  {entry.get('time')} {entry['level']} {entry.get('message')}")
    return found[-last:]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.write_sep("-", "fault suite: reconcile")
        terminalreporter.write_line(table(RESULTS))
