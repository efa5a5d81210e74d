"""The delivery queue: claim due deliveries, send them, record each outcome.

Sending happens outside any transaction (a slow receiver holds no lock). The final outcome and
its `notification.delivered` / `notification.failed` event are written in one transaction;
a failure before the cap schedules the next try with backoff and jitter.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from services.notify.channels import DeliveryError
from services.notify.domain import RetryPolicy
from services.notify.store import ClaimedDelivery, NotifyUnitOfWork
from shared.events import Event, new_event

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, job: ClaimedDelivery, destination: dict[str, str]) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def outcome_event(job: ClaimedDelivery, *, delivered: bool, error: str | None) -> Event:
    return new_event(
        "notification.delivered" if delivered else "notification.failed",
        source_service="notify",
        subject=job.patient,
        actor="system",
        data={
            "notification_id": job.notification_id,
            "patient": job.patient,
            "kind": job.kind,
            "channel": job.channel,
            "attempts": job.attempts,
            "error": error,
        },
    )


class DeliveryQueue:
    def __init__(
        self,
        sessions: Callable[[], Session],
        senders: Mapping[str, Sender],
        *,
        policy: RetryPolicy,
        lease: timedelta,
        batch_size: int = 20,
        clock: Callable[[], datetime] = _now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._senders = senders
        self._policy = policy
        self._lease = lease
        self._batch_size = batch_size
        self._clock = clock
        self._jitter = jitter

    def deliver_due(self) -> int:
        """Send one batch of due deliveries; answer how many were tried."""
        with NotifyUnitOfWork(self._sessions) as uow:
            jobs = uow.deliveries.claim_due(
                now=self._clock(), lease=self._lease, limit=self._batch_size
            )
            destinations = [uow.destination_of(job) for job in jobs]
            uow.commit()
        for job, destination in zip(jobs, destinations, strict=True):
            self._record(job, self._send(job, destination))
        return len(jobs)

    def _send(
        self, job: ClaimedDelivery, destination: dict[str, str] | None
    ) -> DeliveryError | None:
        if destination is None:
            return DeliveryError(f"the {job.channel} destination was removed", permanent=True)
        try:
            self._senders[job.channel].send(job, destination)
        except DeliveryError as err:
            return err
        except Exception as err:  # a sender's bug fails this try, not the whole queue
            log.exception("delivery %s: unexpected %s", job.id, type(err).__name__)
            return DeliveryError(f"unexpected {type(err).__name__}")
        return None

    def _record(self, job: ClaimedDelivery, error: DeliveryError | None) -> None:
        now = self._clock()
        with NotifyUnitOfWork(self._sessions) as uow:
            if error is None:
                if uow.deliveries.finish(job, state="delivered", error=None, now=now):
                    uow.publish(outcome_event(job, delivered=True, error=None))
            elif error.permanent or self._policy.gives_up_after(job.attempts):
                if uow.deliveries.finish(job, state="failed", error=error.reason, now=now):
                    uow.publish(outcome_event(job, delivered=False, error=error.reason))
            else:
                delay = self._policy.delay_after(job.attempts, self._jitter())
                uow.deliveries.retry_later(job, error=error.reason, at=now + delay)
            uow.commit()
        if error is not None:
            log.info("delivery %s try %d failed: %s", job.id, job.attempts, error.reason)

    def run(self, stop: threading.Event, *, idle_seconds: float = 1.0) -> None:
        """Deliver until `stop` is set, backing off while the database is away."""
        backoff = idle_seconds
        while not stop.is_set():
            try:
                tried = self.deliver_due()
                backoff = idle_seconds
            except Exception as err:
                log.warning("delivery queue: %s; retrying in %.1fs", type(err).__name__, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if tried < self._batch_size:
                stop.wait(idle_seconds)
