"""`caretrail`: run and operate the system from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from shared.auth import ROLES, mint_token
from shared.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _kafka(args: argparse.Namespace) -> int:
    from caretrail.kafka_server import LocalBroker

    broker = LocalBroker(data_dir=Path(args.data_dir), port=args.port)
    if args.action == "start":
        started = time.monotonic()
        broker.start()
        print(
            f"kafka is up at {broker.bootstrap} ({time.monotonic() - started:.1f}s); "
            f"log: {broker.log_file}"
        )
    elif args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
    else:
        pid = broker.running_pid()
        print(f"kafka is running (pid {pid}) at {broker.bootstrap}" if pid else "kafka is stopped")
        return 0 if pid else 3
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env("cli")
    token = mint_token(
        settings,
        role=args.role,
        sub=args.sub,
        org=args.org,
        patient=args.patient,
        scope=args.scope,
        ttl_seconds=args.ttl,
    )
    print(f"# {args.role} {args.sub}" + (f" of {args.org}" if args.org else ""))
    print(token)
    return 0


SERVICES = ("records", "consent", "audit", "notify")


def _service_module(service: str, name: str) -> object | None:
    try:
        return importlib.import_module(f"services.{service}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"services.{service}.{name}" or err.name == f"services.{service}":
            return None
        raise


def _migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade

    for service in args.services or SERVICES:
        migrations = ROOT / "services" / service / "migrations"
        if not migrations.exists():
            continue
        settings = Settings.from_env(service)
        upgrade(migrations, settings.database_url)
        print(f"{service}: database at head ({settings.database_url.split('@')[-1]})")
    return 0


def _worker(args: argparse.Namespace) -> int:
    module = _service_module(args.service, "worker")
    if module is None:
        print(f"{args.service} has no worker yet", file=sys.stderr)
        return 2
    return int(module.main([]))  # type: ignore[attr-defined]


def _web(args: argparse.Namespace) -> int:
    from shared.config import DEFAULT_PORTS

    bind = os.environ.get(f"CARETRAIL_{args.service.upper()}_BIND",
                          f"127.0.0.1:{DEFAULT_PORTS[args.service]}")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    os.execv(str(gunicorn), [
        str(gunicorn), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--bind", bind,
        f"services.{args.service}.app:create_app()",
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caretrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="run the local Kafka broker (KRaft)")
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.add_argument(
        "--port", type=int, default=int(os.environ.get("CARETRAIL_KAFKA_PORT", 9092))
    )
    kafka.add_argument(
        "--data-dir", default=os.environ.get("CARETRAIL_KAFKA_DATA", "var/kafka/data")
    )
    kafka.set_defaults(run=_kafka)

    token = commands.add_parser("token", help="mint a local bearer token")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", required=True)
    token.add_argument("--org")
    token.add_argument("--patient")
    token.add_argument("--scope", help="SMART v2 scopes; a default per role otherwise")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.set_defaults(run=_token)

    migrate = commands.add_parser("migrate", help="bring each service's database to head")
    migrate.add_argument("services", nargs="*", choices=SERVICES)
    migrate.set_defaults(run=_migrate)

    web = commands.add_parser("web", help="serve a service's HTTP API with gunicorn")
    web.add_argument("service", choices=SERVICES)
    web.set_defaults(run=_web)

    worker = commands.add_parser("worker", help="run a service's consumers and outbox relay")
    worker.add_argument("service", choices=SERVICES)
    worker.set_defaults(run=_worker)

    # Each service may add its own commands (`caretrail audit verify`, ...) in commands.py.
    for service in SERVICES:
        module = _service_module(service, "commands")
        if module is not None:
            module.register(commands)  # type: ignore[attr-defined]
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
