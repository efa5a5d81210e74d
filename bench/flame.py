"""Flame graphs of the records web workers while a scenario's load runs (issue 12, item 8).

py-spy samples a gunicorn master and its forked workers (`--subprocesses`) without pausing
them (`--nonblocking`: it may read a torn stack now and then, but the workers are measured at
their own speed) and writes an SVG when it is interrupted.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from caretrail.system import BIN


class FlameGraph:
    """`py-spy record` of `pid` and its children into the SVG `path`, for as long as the block.

    A graph py-spy could not write is named in `problem`, not raised: the figures measured
    meanwhile are worth more than the graph."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid = pid
        self.path = path
        self.problem: str | None = None

    def __enter__(self) -> FlameGraph:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--nonblocking",
                "-f",
                "flamegraph",
                "-o",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        # py-spy writes its file on SIGINT, as on Ctrl-C.
        self._process.send_signal(signal.SIGINT)
        _, errors = self._process.communicate(timeout=60)
        if not self.path.exists():
            self.problem = f"py-spy wrote no {self.path.name}: {errors.decode()[-300:]}"


def py_spy() -> str:
    """The py-spy beside the interpreter (a dev dependency), else the one on PATH."""
    found = BIN / "py-spy"
    if found.exists():
        return str(found)
    on_path = shutil.which("py-spy")
    if on_path is None:
        raise RuntimeError("py-spy is missing: `.venv/bin/pip install py-spy`")
    return on_path
