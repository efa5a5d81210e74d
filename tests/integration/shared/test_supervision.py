"""Under `caretrail up`'s supervision a killed process comes back, the broker included; and
`caretrail kafka start` sees through a pid file whose broker is dead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caretrail import supervision
from caretrail.kafka_server import LocalBroker, free_port
from caretrail.supervision import Program
from shared.broker import reachable

ROOT = Path(__file__).resolve().parents[3]


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Wait until `condition` holds; answer how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.2)
    return time.monotonic() - started


def broker_port() -> int:
    """A free port whose next one is free too (the broker's controller listens there)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@contextmanager
def supervising(home: Path, programs: list[Program], env: dict[str, str]) -> Iterator[Any]:
    """supervisord running `programs` as `caretrail up` runs them; answer its control interface
    (and its log is home/supervisord.out)."""
    config = supervision.write_config(home, programs)
    with open(home / "supervisord.out", "ab") as out:
        process = subprocess.Popen(
            supervision.supervisord_command(config),
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: supervision.socket_path(home).exists(), timeout=30)
        yield supervision.control(home).supervisor
    finally:
        process.send_signal(signal.SIGTERM)  # it stops every program, then itself
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pid_of(supervisor: Any, name: str) -> int | None:
    """The program's pid while it is starting or running."""
    info = supervisor.getProcessInfo(name)
    return int(info["pid"]) if info["statename"] in ("STARTING", "RUNNING") else None


def test_a_worker_killed_with_sigkill_is_started_again_and_the_exit_is_logged(tmp_path):
    worker = Program("consent-worker", f"{supervision.BIN / 'caretrail'} worker consent")
    env = {
        # No broker is needed: a worker waits for one, running.
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "CARETRAIL_CONSENT_DATABASE_URL": f"sqlite:///{tmp_path / 'consent.sqlite3'}",
    }
    with supervising(tmp_path, [worker], env) as supervisor:
        wait_for(lambda: supervisor.getProcessInfo(worker.name)["statename"] == "RUNNING", 60)
        first = pid_of(supervisor, worker.name)
        os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
        back = wait_for(lambda: pid_of(supervisor, worker.name) not in (None, first), 30)
        print(f"worker started again {back:.1f}s after SIGKILL")

    said = (tmp_path / "supervisord.out").read_text()
    assert "exited: consent-worker (terminated by SIGKILL; not expected)" in said


def test_a_broker_killed_with_sigkill_is_started_again_and_answers(tmp_path):
    port = broker_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = supervision.broker_program(port, tmp_path / "kafka")
    with supervising(tmp_path, [broker], {}) as supervisor:
        wait_for(lambda: reachable(bootstrap), timeout=120)
        first = pid_of(supervisor, broker.name)
        assert LocalBroker(data_dir=tmp_path / "kafka", port=port).running_pid() == first

        os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
        back = wait_for(
            lambda: pid_of(supervisor, broker.name) not in (None, first) and reachable(bootstrap),
            timeout=120,
        )
        print(f"broker answering again {back:.1f}s after SIGKILL")

    said = (tmp_path / "supervisord.out").read_text()
    assert "exited: kafka (terminated by SIGKILL; not expected)" in said


def test_a_pid_file_naming_a_dead_broker_or_another_process_names_no_running_broker(tmp_path):
    broker = LocalBroker(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    properties = tmp_path / "server.properties"
    # Stand-ins whose command line reads like the broker's (java ... kafka.Kafka <properties>).
    like_broker = [sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka"]
    alive = subprocess.Popen([*like_broker, str(properties)])
    killed = subprocess.Popen([*like_broker, str(properties)])
    elsewhere = subprocess.Popen([*like_broker, str(tmp_path / "other" / "server.properties")])
    try:
        broker.pid_file.write_text(str(alive.pid))
        assert broker.running_pid() == alive.pid

        os.kill(killed.pid, signal.SIGKILL)
        time.sleep(0.2)  # a zombie until its parent (this process) reaps it
        broker.pid_file.write_text(str(killed.pid))
        assert broker.running_pid() is None

        broker.pid_file.write_text(str(elsewhere.pid))
        assert broker.running_pid() is None
    finally:
        for process in (alive, killed, elsewhere):
            process.kill()
            process.wait()
