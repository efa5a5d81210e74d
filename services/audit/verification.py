"""Verifying the whole trail: on request (`GET /audit/verify`) and on a schedule in the
worker, which keeps each result signed with the checkpoint key, so the console can say when
the trail last verified without making anyone wait for it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from services.audit.domain import ChainReport, check_chains, format_time
from services.audit.signing import Checkpoint, Verification, is_signed_by, signature_of
from services.audit.store import AuditUnitOfWork

log = logging.getLogger(__name__)

VERIFY_INTERVAL_SECONDS = 900.0


@dataclass(frozen=True)
class TrailVerdict:
    ok: bool
    checkpoint: Checkpoint | None
    checkpoint_signature_ok: bool
    reports: list[ChainReport]


def verify_trail(uow: AuditUnitOfWork, public_key: Ed25519PublicKey) -> TrailVerdict:
    """Recompute every chain and hold each to the latest signed checkpoint."""
    latest = uow.checkpoints.latest()
    signature_ok = latest is not None and is_signed_by(public_key, latest)
    signed = {(h.topic, h.partition): h for h in latest.heads} if latest and signature_ok else {}
    reports = check_chains(uow.trail.in_chain_order(), signed)
    ok = all(r.ok for r in reports) and (latest is None or signature_ok)
    return TrailVerdict(ok, latest, signature_ok, reports)


def verification_of(verdict: TrailVerdict, verified_at: str) -> Verification:
    """What a scheduled run keeps of a verdict (unsigned)."""
    problems = [
        f"{r.topic} partition {r.partition} seq {r.first_bad_seq}: {r.problem}"
        for r in verdict.reports
        if not r.ok
    ]
    if verdict.checkpoint is not None and not verdict.checkpoint_signature_ok:
        problems.append("the latest checkpoint's signature does not verify")
    return Verification(
        verified_at=verified_at,
        ok=verdict.ok,
        chains=len(verdict.reports),
        entries=sum(r.entries for r in verdict.reports),
        problems=tuple(problems),
    )


def run_verification(
    sessions: Callable[[], Session], key: Ed25519PrivateKey, *, now: datetime | None = None
) -> Verification:
    """Verify every chain now and keep the signed result."""
    started = time.monotonic()
    with AuditUnitOfWork(sessions) as uow:
        verdict = verify_trail(uow, key.public_key())
        unsigned = verification_of(verdict, format_time(now or datetime.now(UTC)))
        verification = replace(unsigned, signature=signature_of(key, unsigned.payload()))
        uow.verifications.add(verification)
        uow.commit()
    log.info(
        "verified %d chains (%s) in %.1f s",
        verification.chains,
        "ok" if verification.ok else "BROKEN",
        time.monotonic() - started,
    )
    return verification


def verification_job(
    sessions: Callable[[], Session], key: Ed25519PrivateKey, interval_seconds: float
) -> Callable[[threading.Event], None]:
    """A worker job that verifies the trail every `interval_seconds` until stopped."""

    def run(stop: threading.Event) -> None:
        # Once at start too: the console shows a result soon after the worker comes up.
        while True:
            try:
                run_verification(sessions, key)
            except Exception as err:  # the database may be away; try again next time
                log.warning("trail not verified: %s", type(err).__name__)
            if stop.wait(interval_seconds):
                return

    return run
