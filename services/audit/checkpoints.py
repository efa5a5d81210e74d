"""The checkpoint signer: every so often, sign the chain heads if they moved."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from services.audit.domain import format_time
from services.audit.signing import Checkpoint, sign
from services.audit.store import AuditUnitOfWork

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 60.0


def sign_checkpoint(
    sessions: Callable[[], Session], key: Ed25519PrivateKey, *, now: datetime | None = None
) -> Checkpoint | None:
    """Sign the current chain heads; None when nothing was appended since the last one."""
    with AuditUnitOfWork(sessions) as uow:
        heads = uow.trail.heads()
        latest = uow.checkpoints.latest()
        if not heads or (latest is not None and latest.heads == heads):
            return None
        checkpoint = sign(key, format_time(now or datetime.now(UTC)), heads)
        uow.checkpoints.add(checkpoint)
        uow.commit()
    log.info("signed a checkpoint of %d chain heads", len(heads))
    return checkpoint


def checkpoint_job(
    sessions: Callable[[], Session], key: Ed25519PrivateKey, interval_seconds: float
) -> Callable[[threading.Event], None]:
    """A worker job that signs a checkpoint every `interval_seconds` until stopped."""

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval_seconds):
            try:
                sign_checkpoint(sessions, key)
            except Exception as err:  # the database may be away; try again next time
                log.warning("checkpoint not signed: %s", type(err).__name__)

    return run
