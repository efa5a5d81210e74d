"""`caretrail`: run and operate the system from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from shared.auth import ROLES, mint_token
from shared.config import Settings


def _kafka(args: argparse.Namespace) -> int:
    from caretrail.kafka_server import LocalBroker

    broker = LocalBroker(data_dir=Path(args.data_dir), port=args.port)
    if args.action == "start":
        started = time.monotonic()
        broker.start()
        print(f"kafka is up at {broker.bootstrap} ({time.monotonic() - started:.1f}s); "
              f"log: {broker.log_file}")
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
        settings, role=args.role, sub=args.sub, org=args.org, patient=args.patient,
        scope=args.scope, ttl_seconds=args.ttl,
    )
    print(f"# {args.role} {args.sub}" + (f" of {args.org}" if args.org else ""))
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caretrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="run the local Kafka broker (KRaft)")
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.add_argument("--port", type=int, default=int(os.environ.get("CARETRAIL_KAFKA_PORT",
                                                                      9092)))
    kafka.add_argument("--data-dir", default=os.environ.get("CARETRAIL_KAFKA_DATA",
                                                            "var/kafka/data"))
    kafka.set_defaults(run=_kafka)

    token = commands.add_parser("token", help="mint a local bearer token")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", required=True)
    token.add_argument("--org")
    token.add_argument("--patient")
    token.add_argument("--scope", help="SMART v2 scopes; a default per role otherwise")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.set_defaults(run=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
