"""The worker's periodic jobs: the consent expiry warning and the daily digest."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from services.notify.domain import EXPIRY_WARNING, expiring_notice
from services.notify.store import NotifyUnitOfWork

log = logging.getLogger(__name__)

Sessions = Callable[[], Session]
Job = Callable[[threading.Event], None]


def warn_of_expiring_consents(sessions: Sessions, *, now: datetime) -> int:
    """Warn once of every active consent that ends within seven days; answer how many."""
    warned = 0
    with NotifyUnitOfWork(sessions) as uow:
        for consent in uow.consents.ending_before(now + EXPIRY_WARNING):
            notice = expiring_notice(consent, now)
            if notice is not None and uow.notify(notice, now=now) is not None:
                warned += 1
            uow.consents.warned(consent.consent_id)  # ended already, or warned: done with it
        uow.commit()
    return warned


def send_digests(sessions: Sessions, *, now: datetime) -> list[str]:
    """Queue one digest per patient, channel and target of the notifications waiting for it;
    answer the ids of the deliveries queued."""
    with NotifyUnitOfWork(sessions) as uow:
        queued = uow.compose_digests(now=now)
        uow.commit()
    return queued


def send_digests_once_a_day(sessions: Sessions, *, now: datetime, hour: int) -> list[str]:
    """`send_digests` the first time it is called on a day from `hour` (UTC) on."""
    if now.hour < hour:
        return []
    with NotifyUnitOfWork(sessions) as uow:
        first = uow.first_run_today("daily-digest", now=now)
        queued = uow.compose_digests(now=now) if first else []
        uow.commit()
    return queued


def every(seconds: float, action: Callable[[datetime], object]) -> Job:
    """A worker job calling `action(now)` every `seconds` until stopped; a failed run is
    logged and tried again at the next tick."""

    def job(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                action(datetime.now(UTC))
            except Exception as err:
                log.warning("%s failed: %s", getattr(action, "__name__", "job"), type(err).__name__)
            stop.wait(seconds)

    return job
