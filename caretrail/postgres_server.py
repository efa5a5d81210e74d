"""A local PostgreSQL cluster (initdb + pg_ctl in a directory of ours), for tests and for
`caretrail up --db postgres`. No system service is needed, only the server binaries.

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import psycopg


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} was not found; install postgresql")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Cluster:
    data_dir: str
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def running(self) -> bool:
        status = subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", self.data_dir, "status"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return status.returncode == 0

    def restart_immediately(self) -> None:
        """Stop at once, as a crash would (no checkpoint: the start replays the WAL), and start
        again with the same options; every open connection is cut."""
        subprocess.run(
            _as_postgres(
                [
                    _bin("pg_ctl"),
                    "-D",
                    self.data_dir,
                    "-m",
                    "immediate",
                    "-l",
                    os.path.join(os.path.dirname(self.data_dir), "pg.log"),
                    "-w",
                    "restart",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self, *, remove: bool = True) -> None:
        mode = "immediate" if remove else "fast"
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", self.data_dir, "-m", mode, "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if remove:
            shutil.rmtree(os.path.dirname(self.data_dir), ignore_errors=True)


def start_cluster(port: int, base: str | None = None, *, durable: bool = False) -> Cluster:
    """Start a cluster under `base` (a new temp dir by default), creating it the first time.

    Throwaway clusters (tests) skip fsync; `durable=True` keeps PostgreSQL's defaults.
    """
    base = base or tempfile.mkdtemp(prefix="caretrail-pg-")
    os.makedirs(base, exist_ok=True)
    data = os.path.join(base, "data")
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(base, pg.pw_uid, pg.pw_gid)
    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        subprocess.run(
            _as_postgres(
                [_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    cluster = Cluster(data, port)
    if cluster.running():
        return cluster
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=300"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        _as_postgres(
            [
                _bin("pg_ctl"),
                "-D",
                data,
                "-o",
                options,
                "-l",
                os.path.join(base, "pg.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(cluster.admin_url).close()
            return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def create_database(admin_url: str, name: str, *, exist_ok: bool = False) -> str:
    """Create database `name` on the server of `admin_url`; answer its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not exist_ok:
            raise RuntimeError(f"database {name} exists")
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
