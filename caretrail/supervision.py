"""The local system under supervisord: a process that dies is started again, the broker too.

`caretrail up` used to run the processes under honcho, which is a Procfile runner and nothing
more: when one process exits it stops all the others, and it restarts nothing. supervisord
(PyPI `supervisor`) is the process supervisor operators already know, configured in a file:
a program that exits unexpectedly is started again at once; one that keeps dying within
`startsecs` of its start is retried after 1 s, 2 s, 3 s ... (its BACKOFF state) and given up
(FATAL) after `startretries` tries; every spawn, exit and backoff is a line of supervisord's
log, which `caretrail up` prints. `supervisorctl -c var/supervisord.conf status` (or `restart
records-worker`) works on the running system.

The programs are deploy/Procfile's, and the broker, in the foreground (`caretrail kafka run`),
so that supervisord is its parent: it reaps it when it dies and starts another.
"""

from __future__ import annotations

import sys
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "deploy" / "Procfile"
BIN = Path(sys.executable).parent

# A process that dies within this many seconds of its start did not start: it is retried after
# 1 s, then 2 s, 3 s ... up to STARTRETRIES times (about 3.5 min of backoff), then left FATAL.
STARTSECS = 5
STARTRETRIES = 20


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    stop_seconds: int = 20


def procfile_programs(procfile: Path = PROCFILE) -> list[Program]:
    """The web apps and workers, as deploy/Procfile names them (commands on the venv's PATH)."""
    programs = []
    for line in procfile.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = (part.strip() for part in line.split(":", 1))
            programs.append(Program(name, str(BIN / command)))
    return programs


def broker_program(port: int, data_dir: Path) -> Program:
    # The broker's own shutdown (a controlled one, flushing its logs) can take a while.
    command = f"{BIN / 'caretrail'} kafka run --port {port} --data-dir {data_dir}"
    return Program("kafka", command, stop_seconds=60)


def write_config(home: Path, programs: list[Program], *, directory: Path = ROOT) -> Path:
    """Write supervisord's configuration for `programs` under `home`; answer its path.

    supervisord's own log goes to its standard output (the terminal of `caretrail up`) and to
    `home/log/supervisord.log`; each program's output to `home/log/<name>.log`."""
    (home / "log").mkdir(parents=True, exist_ok=True)
    path = home / "supervisord.conf"
    sections = [
        "[supervisord]",
        "nodaemon=true",  # in the foreground, logging to its standard output as well
        f"logfile={home / 'log' / 'supervisord.log'}",
        f"pidfile={home / 'supervisord.pid'}",
        f"directory={directory}",
        "",
        "[unix_http_server]",
        f"file={socket_path(home)}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path(home)}",
        "",
    ]
    for program in programs:
        sections += [
            f"[program:{program.name}]",
            f"command={program.command}",
            "autorestart=true",
            f"startsecs={STARTSECS}",
            f"startretries={STARTRETRIES}",
            # gunicorn's workers and a worker's threads stop with their process.
            "stopasgroup=true",
            "killasgroup=true",
            f"stopwaitsecs={program.stop_seconds}",
            "redirect_stderr=true",
            f"stdout_logfile={home / 'log' / program.name}.log",
            "",
        ]
    path.write_text("\n".join(sections))
    return path


def socket_path(home: Path) -> Path:
    return home / "supervisor.sock"


def supervisord_command(config: Path) -> list[str]:
    return [str(BIN / "supervisord"), "-c", str(config)]


def control(home: Path) -> Any:
    """supervisord's XML-RPC interface (what supervisorctl speaks), e.g.
    `control(home).supervisor.getProcessInfo("kafka")`."""
    transport = SupervisorTransport(None, None, f"unix://{socket_path(home)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
