"""Notify's own settings, read once from `Settings.extra` (env `CARETRAIL_NOTIFY_<KEY>`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from services.notify.domain import READ_WINDOW, RetryPolicy
from shared.config import Settings


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class NotifyConfig:
    allow_loopback_webhooks: bool = False
    smtp_url: str = "smtp://127.0.0.1:25"
    mail_from: str = "caretrail <notify@caretrail.localhost>"
    retry: RetryPolicy = RetryPolicy()
    lease: timedelta = timedelta(seconds=60)
    send_timeout_seconds: float = 10.0
    delivery_poll_seconds: float = 1.0
    digest_hour: int = 18
    expiry_check_seconds: float = 3600.0
    # Reads by one reader for one purpose within this window are one notification; 0: none fold.
    read_window: timedelta = READ_WINDOW

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        extra = settings.extra
        default = cls()
        return cls(
            allow_loopback_webhooks=_flag(extra.get("allow_loopback_webhooks", False)),
            # The SMTP URL is shared with other tools, hence no NOTIFY_ in its name.
            smtp_url=str(
                extra.get("smtp_url") or os.environ.get("CARETRAIL_SMTP_URL") or default.smtp_url
            ),
            mail_from=str(extra.get("mail_from", default.mail_from)),
            retry=RetryPolicy(
                max_attempts=int(extra.get("delivery_max_attempts", default.retry.max_attempts)),
                first_delay_seconds=float(
                    extra.get("delivery_first_delay_seconds", default.retry.first_delay_seconds)
                ),
                max_delay_seconds=float(
                    extra.get("delivery_max_delay_seconds", default.retry.max_delay_seconds)
                ),
            ),
            lease=timedelta(
                seconds=float(extra.get("delivery_lease_seconds", default.lease.total_seconds()))
            ),
            send_timeout_seconds=float(
                extra.get("send_timeout_seconds", default.send_timeout_seconds)
            ),
            delivery_poll_seconds=float(
                extra.get("delivery_poll_seconds", default.delivery_poll_seconds)
            ),
            digest_hour=int(extra.get("digest_hour", default.digest_hour)),
            expiry_check_seconds=float(
                extra.get("expiry_check_seconds", default.expiry_check_seconds)
            ),
            read_window=_window(
                extra.get("read_window_seconds", default.read_window.total_seconds())
            ),
        )


def _window(seconds: Any) -> timedelta:
    window = timedelta(seconds=float(seconds))
    if window < timedelta(0):
        raise ValueError("CARETRAIL_NOTIFY_READ_WINDOW_SECONDS must be 0 or more")
    return window
