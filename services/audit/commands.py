"""`caretrail audit ...`: export, offline verification, rebuild, and signing a checkpoint now."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shared.config import Settings


def register(commands: Any) -> None:
    """Add the `audit` command group to the `caretrail` CLI."""
    audit = commands.add_parser("audit", help="export, verify and rebuild the audit trail")
    actions = audit.add_subparsers(dest="audit_command", required=True)

    export = actions.add_parser("export", help="write entries, checkpoints and public key")
    export.add_argument("--out", required=True, type=Path, help="the file to write (JSON lines)")
    export.set_defaults(run=_export)

    verify = actions.add_parser("verify", help="check an export offline")
    verify.add_argument("--export", required=True, type=Path, dest="export_file")
    verify.add_argument(
        "--public-key", type=Path, help="PEM of the key the checkpoints must be signed with"
    )
    verify.set_defaults(run=_verify)

    rebuild = actions.add_parser(
        "rebuild", help="empty the trail and replay every fact topic from offset 0"
    )
    rebuild.add_argument(
        "--processes",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="replay in N processes sharing the partitions (1 to 8; default 1)",
    )
    rebuild.set_defaults(run=_rebuild)

    checkpoint = actions.add_parser("checkpoint", help="sign the chain heads now")
    checkpoint.set_defaults(run=_checkpoint)


def _export(args: argparse.Namespace) -> int:
    from services.audit.export import export_lines
    from services.audit.signing import public_pem, signing_key
    from services.audit.store import AuditUnitOfWork
    from shared.db import make_engine, session_factory
    from shared.fact_signing import SERVICES, SOURCE_PREFIX, FactKeys

    settings = Settings.from_env("audit")
    key = signing_key(settings)
    fact_keys = FactKeys.from_directory().pems(SOURCE_PREFIX + s for s in SERVICES)
    sessions = session_factory(make_engine(settings.database_url))
    count = 0
    with AuditUnitOfWork(sessions) as uow, args.out.open("wb") as out:
        checkpoints = list(uow.checkpoints.all())
        for line in export_lines(
            uow.trail.in_chain_order(), checkpoints, public_pem(key), fact_keys
        ):
            out.write(line)
            count += 1
    print(
        f"wrote {count - 1 - len(checkpoints)} entries and {len(checkpoints)} checkpoints "
        f"to {args.out}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from services.audit.export import ExportRejected, verify_export

    public_key = args.public_key.read_bytes() if args.public_key else None
    try:
        verdict = verify_export(args.export_file.read_bytes(), public_key_pem=public_key)
    except ExportRejected as err:
        print(f"{args.export_file}: NOT VALID: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.export_file}: valid: {verdict.entries} entries in {verdict.chains} chains, "
        f"{verdict.checkpoints} signed checkpoints, {verdict.authentic_facts} entries "
        "of facts whose signature verifies for their source"
    )
    for note in verdict.notes:
        print(f"note: {note}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from services.audit.rebuild import WorkerStillRunning, rebuild, require_stopped_worker
    from shared.db import make_engine

    settings = Settings.from_env("audit")
    try:
        require_stopped_worker(settings.kafka_bootstrap_servers)
    except WorkerStillRunning as err:
        print(err, file=sys.stderr)
        return 2
    result = rebuild(
        make_engine(settings.database_url),
        settings.kafka_bootstrap_servers,
        progress=lambda n: print(f"\r{n} events", end="", flush=True),
        processes=args.processes,
    )
    print(
        f"\rreplayed {result.events} events in {result.seconds:.1f} s "
        f"({result.events_per_second:.0f} events/s); {result.skipped} messages were not "
        "facts"
    )
    if not result.heads_before:
        print(f"built {len(result.heads_after)} chains (the trail was empty)")
        return 0
    if result.heads_equal:
        print(f"chain heads: all {len(result.heads_after)} equal to before the rebuild")
        return 0
    print(f"chain heads that differ from before the rebuild: {result.changed_chains()}")
    return 1


def _checkpoint(args: argparse.Namespace) -> int:
    from services.audit.checkpoints import sign_checkpoint
    from services.audit.signing import signing_key
    from shared.db import make_engine, session_factory

    settings = Settings.from_env("audit")
    signed = sign_checkpoint(
        session_factory(make_engine(settings.database_url)), signing_key(settings)
    )
    print(f"signed the heads of {len(signed.heads)} chains" if signed else "nothing new to sign")
    return 0
