"""The records web app alone under gunicorn and wrk: its own cost, without Kafka or consumers.

The full bench measures a read with everything it causes (relay, audit, notify) on the same two
cores; this measures what the web process itself does, and can point at any checkout, so a
change is measured side by side with the code before it:

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.records_alone --repo /tmp/before --flame bench/results/x-before
    .venv/bin/python -m bench.records_alone --flame bench/results/x-after

Data: 100 patients x 5 Observations by Dr Lee of org A, each with a consent letting org B read
them (read); one chart of 200, a fifth of them labelled sensitive (list); writes go to the
100 charts. The access facts stay in the outbox (no relay runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
BIND = "127.0.0.1:18071"


def _load(repo: Path, home: Path) -> dict[str, str]:
    """Write the data through the app of `repo`, in this process; answer the wrk inputs."""
    sys.path.insert(0, str(repo))
    from bench.data import AUTHOR, READER, resource
    from bench.profile_read import _grant
    from services.records.app import create_app
    from services.records.store import metadata
    from shared.config import Settings
    from shared.db import create_schema

    url = f"sqlite:///{home / 'records.sqlite3'}"
    settings = Settings.from_env("records", database_url=url, kafka_bootstrap_servers="127.0.0.1:9")
    app = create_app(settings)
    engine = app.extensions["records.engine"]
    create_schema(engine, metadata)
    client, rng = app.test_client(), random.Random(1)
    cli = Settings.from_env("cli")
    author = {"Authorization": f"Bearer {AUTHOR.token(cli)}"}
    reads, charts = [], []
    for n in range(100):
        for _ in range(5):
            answer = client.post(f"/patients/p-{n}/records", json=resource(rng), headers=author)
            reads.append(f"/patients/p-{n}/records/{answer.json['id']}")  # type: ignore[index]
        charts.append(f"/patients/p-{n}/records")
        _grant(engine, f"p-{n}")
    for m in range(200):
        body = resource(rng, sensitive=m % 5 == 0)
        client.post("/patients/chart/records", json=body, headers=author)
    _grant(engine, "chart")
    engine.dispose()
    (home / "read").write_text("\n".join(reads) + "\n")
    (home / "list").write_text("/patients/chart/records\n")
    (home / "write").write_text("\n".join(charts) + "\n")
    (home / "body.json").write_text(json.dumps(resource(rng)))
    return {"url": url, "reader": READER.token(cli), "author": AUTHOR.token(cli)}


def _wrk(home: Path, scenario: str, token: str, seconds: int) -> dict[str, float]:
    method = ["POST", str(home / "body.json")] if scenario == "write" else []
    command = [
        "wrk", "-t2", "-c32", f"-d{seconds}s", "-s", str(HERE / "bench/lua/requests.lua"),
        f"http://{BIND}", "--", str(home / scenario), token, *method,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    run = json.loads(line.removeprefix("BENCH_JSON "))
    return {
        "per_second": run["requests"] / (run["duration_us"] / 1e6),
        "p50_ms": run["p50_us"] / 1000,
        "p99_ms": run["p99_us"] / 1000,
        "errors": run["status_errors"] + run["socket_errors"],
    }


def _until_ready(timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://{BIND}/healthz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=HERE, help="the checkout to measure")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--flame", help="py-spy SVG per scenario: <prefix>-read.svg, ...")
    args = parser.parse_args(argv)
    # Made-up data on a developer's machine: the published development keys are fine here.
    os.environ.setdefault("CARETRAIL_LOCAL", "1")  # shared.config.LOCAL_MODE_ENV; any checkout
    repo = args.repo.resolve()
    home = Path(tempfile.mkdtemp(prefix="caretrail-records-alone-"))
    given = _load(repo, home)
    env = {
        **os.environ,
        "CARETRAIL_SERVICE": "records",
        "CARETRAIL_RECORDS_DATABASE_URL": given["url"],
        "CARETRAIL_BIND": BIND,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    }
    gunicorn = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(repo / "deploy/gunicorn.conf.py"),
    ]
    server = subprocess.Popen(
        [*gunicorn, "services.records.app:create_app()"],
        env=env,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=(home / "gunicorn.log").open("w"),
    )
    try:
        _until_ready()
        for scenario, token in (("read", "reader"), ("list", "reader"), ("write", "author")):
            _wrk(home, scenario, given[token], 3)  # warm-up
            spy = None
            if args.flame:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(server.pid),
                        "--subprocesses",
                        "--nonblocking",
                        "-r",
                        "200",
                        "-d",
                        str(args.seconds),
                        "-o",
                        f"{args.flame}-{scenario}.svg",
                    ],  # fmt: skip
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            run = _wrk(home, scenario, given[token], args.seconds)
            if spy is not None:
                spy.wait()
            figures = f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms"
            print(f"{repo.name} {scenario}: {run['per_second']:.0f} req/s, {figures}, ", end="")
            print(f"{run['errors']:.0f} errors")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
