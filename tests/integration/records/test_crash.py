"""A records web process killed under load: no read it answered is missing its access fact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import select

from caretrail.kafka_server import free_port
from services.records.app import create_app
from services.records.store import metadata
from shared.config import Settings
from shared.db import create_schema
from tests.conftest import bearer
from tests.integration.records.support import MASTER_KEY, observation

ROOT = Path(__file__).resolve().parents[3]
outbox = metadata.tables["outbox"]


def serve(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARETRAIL_SERVICE": "records",
        "CARETRAIL_RECORDS_DATABASE_URL": database_url,
        "CARETRAIL_RECORDS_MASTER_KEY": MASTER_KEY,
        "CARETRAIL_BIND": f"127.0.0.1:{port}",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # the relay is not under test
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(ROOT / "deploy/gunicorn.conf.py"),
            "services.records.app:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # one process group: the kill takes master and workers at once
    )


def test_every_read_answered_before_a_kill_has_its_access_fact(database_url, token):
    settings = Settings.from_env("records", database_url=database_url, master_key=MASTER_KEY)
    app = create_app(settings)
    engine = app.extensions["records.engine"]
    create_schema(engine, metadata)
    author = bearer(token("practitioner", "dr-lee", org="org-a"))
    client = app.test_client()
    paths = []
    for n in range(400):
        answer = client.post(f"/patients/p-{n % 20}/records", json=observation(), headers=author)
        paths.append(f"/patients/p-{n % 20}/records/{answer.json['id']}")

    port = free_port()
    server = serve(database_url, port)
    answered: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:  # not listening, or its workers still starting
                time.sleep(0.1)

        def read(mine: list[str]) -> None:
            with requests.Session() as http:
                for path in mine:
                    try:
                        answer = http.get(base + path, headers=author, timeout=5)
                    except requests.RequestException:
                        return  # the server is gone
                    if answer.status_code == 200:
                        answered.append(answer.json()["id"])

        readers = [threading.Thread(target=read, args=(paths[i::8],)) for i in range(8)]
        for reader in readers:
            reader.start()
        while len(answered) < 50 and any(r.is_alive() for r in readers):
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: batches of facts are in flight
        for reader in readers:
            reader.join(10)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)

    with engine.connect() as conn:
        values = conn.execute(select(outbox.c.value).where(outbox.c.type.like("%accessed%")))
        with_fact = {rid for (value,) in values for rid in json.loads(value)["record_ids"]}
    engine.dispose()
    assert 50 <= len(answered) < len(paths), "the kill came before or after the load"
    assert set(answered) <= with_fact
