"""wrk, the load generator: one process of its own, driven by bench/lua/requests.lua."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "lua" / "requests.lua"
INSTALL_HINT = "wrk is missing: install it with `apt-get install -y wrk` (Debian/Ubuntu)"


class WrkMissing(RuntimeError):
    pass


def require_wrk() -> str:
    """The path of wrk, or a clear error saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class Run:
    """What one wrk run measured."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def failed(self) -> int:
        return self.status_errors + self.socket_errors


@dataclass(frozen=True)
class Load:
    """Requests to send: paths picked at random, one method, one body, one token."""

    base_url: str
    paths: list[str]
    token: str
    method: str = "GET"
    body: bytes | None = None
    connections: int = 32
    threads: int = 2

    def run(self, seconds: float, seed: int = 1) -> Run:
        with tempfile.TemporaryDirectory(prefix="caretrail-wrk-") as tmp:
            paths = Path(tmp) / "paths"
            paths.write_text("\n".join(self.paths) + "\n")
            body = Path(tmp) / "body"
            if self.body is not None:
                body.write_bytes(self.body)
            command = [
                require_wrk(),
                f"-t{self.threads}",
                f"-c{self.connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(SCRIPT),
                self.base_url,
                "--",
                str(paths),
                self.token,
                self.method,
                str(body) if self.body is not None else "",
                str(seed),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
        return parse(done.stdout)


def parse(output: str) -> Run:
    """The figures of the BENCH_JSON line that requests.lua's `done` writes."""
    line = next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return Run(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        status_errors=raw["status_errors"],
        socket_errors=raw["socket_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
