"""The whole system as processes on free ports in a directory of its own.

Used by the end-to-end tests and the benchmarks: a Kafka broker, the databases (SQLite files
or a local PostgreSQL cluster), the 4 web apps under gunicorn and the 4 workers, each a real
process that can be killed and restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from caretrail.kafka_server import LocalBroker, free_port
from caretrail.postgres_server import Cluster, create_database, start_cluster
from shared.config import LOCAL_MODE_ENV

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("records", "consent", "audit", "notify")
BIN = Path(sys.executable).parent


@dataclass
class System:
    home: Path
    db: str = "sqlite"
    web_workers: int = 1
    worker_copies: int = 1  # worker processes of each service (`records-worker`, `-2`, ...)
    bootstrap: str | None = None  # an existing broker, or None to start one
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker: LocalBroker | None = None
    cluster: Cluster | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            # The names the audit console shows for the demo's cast; the environment may
            # name another file.
            "CARETRAIL_AUDIT_DIRECTORY_FILE": str(ROOT / "deploy" / "audit-directory.json"),
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap or "",
            "CARETRAIL_WEB_WORKERS": str(self.web_workers),
            "CARETRAIL_LOG_LEVEL": "WARNING",
            LOCAL_MODE_ENV: "1",
            "PYTHONPATH": str(ROOT),
            "CARETRAIL_METRICS_DIR": str(self.home / "metrics"),
            **self.extra_env,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each service's own, under the home
        for service in SERVICES:
            env[f"CARETRAIL_{service.upper()}_BIND"] = f"127.0.0.1:{self.ports[service]}"
        return env

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.ports = {service: free_port() for service in SERVICES}
        if self.bootstrap is None:
            self.broker = LocalBroker(
                data_dir=self.home / "kafka", port=free_port(), controller_port=free_port()
            )
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
        self._databases()
        subprocess.run(
            [str(BIN / "caretrail"), "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for service in SERVICES:
            self.start_process(f"{service}-web")
            self.start_process(f"{service}-worker")
            for copy in range(2, self.worker_copies + 1):
                self.start_process(f"{service}-worker-{copy}")
        self.wait_until_ready()

    def _databases(self) -> None:
        for service in SERVICES:
            key = f"CARETRAIL_{service.upper()}_DATABASE_URL"
            if self.db == "postgres":
                if self.cluster is None:
                    self.cluster = start_cluster(free_port(), str(self.home / "postgres"))
                self.extra_env[key] = create_database(
                    self.cluster.admin_url, f"caretrail_{service}", exist_ok=True
                )
            else:
                self.extra_env[key] = f"sqlite:///{self.home / 'db' / service}.sqlite3"

    def start_process(self, name: str) -> None:
        service, kind = name.split("-")[:2]
        command = [str(BIN / "caretrail"), "web" if kind == "web" else "worker", service]
        log = open(self.home / f"{name}.log", "ab")  # the process owns it
        self.processes[name] = subprocess.Popen(
            command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        os.killpg(process.pid, sig)
        process.wait(30)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start_process(name)

    def wait_until_ready(self, timeout_seconds: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        for service in SERVICES:
            while True:
                self._check_alive()
                try:
                    if requests.get(f"{self.url(service)}/readyz", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} did not become ready; see {self.home}")
                time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.home / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self.broker is not None:
            self.broker.stop()
        if self.cluster is not None:
            self.cluster.stop()
