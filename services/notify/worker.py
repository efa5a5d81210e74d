"""The notify worker: consumers of records, access and consent events, the outbox relay,
the delivery queue, the consent expiry check and the daily digest."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy.orm import Session

from services.notify.channels import EmailSender, WebhookSender
from services.notify.config import NotifyConfig
from services.notify.consumers import handlers
from services.notify.delivery import DeliveryQueue
from services.notify.domain import EMAIL, WEBHOOK
from services.notify.jobs import every, send_digests_once_a_day, warn_of_expiring_consents
from shared.config import Settings
from shared.db import make_engine, session_factory
from shared.events import TOPIC_ACCESS, TOPIC_CONSENT, TOPIC_RECORDS
from shared.telemetry import instrument_engine
from shared.worker import Worker, run_worker_process

MIGRATIONS = Path(__file__).parent / "migrations"
TOPICS = (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT)


def delivery_queue(sessions: Callable[[], Session], config: NotifyConfig) -> DeliveryQueue:
    return DeliveryQueue(
        sessions,
        {
            WEBHOOK: WebhookSender(
                allow_loopback=config.allow_loopback_webhooks,
                timeout_seconds=config.send_timeout_seconds,
            ),
            EMAIL: EmailSender(
                smtp_url=config.smtp_url,
                sender=config.mail_from,
                timeout_seconds=config.send_timeout_seconds,
            ),
        },
        policy=config.retry,
        lease=config.lease,
    )


def build_worker(settings: Settings, *, consumer_group: str = "notify") -> Worker:
    config = NotifyConfig.from_settings(settings)
    engine = make_engine(settings.database_url)
    instrument_engine(engine)
    sessions = session_factory(engine)
    queue = delivery_queue(sessions, config)

    return Worker(
        settings=settings,
        engine=engine,
        consumer_group=consumer_group,
        topics=TOPICS,
        handlers=handlers(read_window=config.read_window),
        jobs={
            "deliveries": partial(queue.run, idle_seconds=config.delivery_poll_seconds),
            "consent-expiry": every(
                config.expiry_check_seconds,
                lambda now: warn_of_expiring_consents(sessions, now=now),
            ),
            "daily-digest": every(
                60.0,
                lambda now: send_digests_once_a_day(sessions, now=now, hour=config.digest_hour),
            ),
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Run the notify worker until SIGTERM or SIGINT, on a database at the latest migration."""
    return run_worker_process(
        "notify",
        MIGRATIONS,
        lambda settings: build_worker(
            settings, consumer_group=str(settings.extra.get("consumer_group", "notify"))
        ),
    )
