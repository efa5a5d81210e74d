"""Profile the hot read paths in one process: a practitioner reads records under consent.

The records app is built in-process on a fresh SQLite file, the consent comes in through the
records consumer's own handler, and pyinstrument samples `--reads` GETs through Flask's test
client (no gunicorn, no network: what remains is the request's own work). `--list` lists the
first page of a chart of 200 records, a tenth of them sensitive (withheld), instead of reading
one record.

    .venv/bin/python -m bench.profile_read --reads 2000 [--list] [--plain] [--html profile.html]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyinstrument import Profiler

from bench.data import AUTHOR, READER, consent_body, resource
from services.records.app import create_app
from services.records.consumers import on_consent_granted
from services.records.store import metadata
from shared.config import LOCAL_MODE_ENV, Settings
from shared.db import create_schema, session_factory
from shared.events import new_event
from shared.inbox import Origin


def _grant(app_engine: object, patient: str) -> None:
    body = consent_body()
    event = new_event(
        "consent.granted",
        source_service="consent",
        subject=patient,
        actor=f"patient:{patient}",
        data={
            "consent_id": f"c-{patient}",
            "patient": patient,
            "version": 1,
            "grantee": body["grantee"],
            "actions": body["actions"],
            "categories": body["categories"],
            "security_labels": [],
            "purposes": body["purposes"],
            "period": {
                "start": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "end": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            },
        },
    )
    with session_factory(app_engine)() as session:  # type: ignore[arg-type]
        on_consent_granted(session, event, Origin("caretrail.consent.v1", 0, 0, 0))
        session.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--html", type=Path)
    parser.add_argument("--plain", action="store_true", help="time the reads, no profiler")
    parser.add_argument("--list", action="store_true", help="list a chart of 200 records")
    args = parser.parse_args(argv)
    # Made-up data on a developer's machine: the published development keys are fine here.
    os.environ.setdefault(LOCAL_MODE_ENV, "1")

    home = Path(tempfile.mkdtemp(prefix="caretrail-profile-"))
    settings = Settings.from_env(
        "records",
        database_url=f"sqlite:///{home / 'records.sqlite3'}",
        kafka_bootstrap_servers="127.0.0.1:9",
    )
    app = create_app(settings)
    engine = app.extensions["records.engine"]
    create_schema(engine, metadata)
    client = app.test_client()
    rng = random.Random(1)
    author = {"Authorization": f"Bearer {AUTHOR.token(Settings.from_env('cli'))}"}
    reader = {"Authorization": f"Bearer {READER.token(Settings.from_env('cli'))}"}
    paths = []
    for n in range(1 if args.list else 20):
        patient = f"profile-{n}"
        for m in range(200 if args.list else 5):
            body = resource(rng, sensitive=args.list and m % 10 == 0)
            answer = client.post(f"/patients/{patient}/records", json=body, headers=author)
            paths.append(f"/patients/{patient}/records/{answer.json['id']}")  # type: ignore[index]
        _grant(engine, patient)
    if args.list:
        paths = ["/patients/profile-0/records"]
    for path in paths[:50]:  # warm up
        assert client.get(path, headers=reader).status_code == 200

    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    if not args.plain:
        profiler.start()
    for _ in range(args.reads):
        client.get(rng.choice(paths), headers=reader)
    seconds = time.perf_counter() - started
    print(
        f"{args.reads} reads in {seconds:.2f} s: {args.reads / seconds:.0f} reads/s in one thread"
    )
    if args.plain:
        return 0
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        args.html.write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
