"""Preferences, routing to channels, retries and messages."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain import (
    ACCESS_DENIED,
    BREAK_GLASS,
    DAILY_DIGEST,
    EMAIL,
    IMMEDIATE,
    INBOX,
    RECORD_ACCESSED,
    WEBHOOK,
    Notification,
    Preferences,
    RetryPolicy,
    choose_preferences,
    digest_message,
    message_for,
    route,
)
from shared.errors import InvalidInput

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_by_default_everything_goes_to_the_inbox_at_once_and_nowhere_else():
    plan = route(RECORD_ACCESSED, Preferences(email="p@example.org"), ["wh-1"])
    assert plan.now == () and plan.digest == ()


def test_the_inbox_is_always_kept_even_when_left_out():
    chosen = choose_preferences(None, {RECORD_ACCESSED: {"channels": [WEBHOOK]}})
    assert chosen.for_kind(RECORD_ACCESSED).channels == {INBOX, WEBHOOK}


def test_immediate_channels_get_one_delivery_per_webhook_and_one_email():
    chosen = choose_preferences(
        "p@example.org", {RECORD_ACCESSED: {"channels": [WEBHOOK, EMAIL], "delivery": IMMEDIATE}}
    )
    plan = route(RECORD_ACCESSED, chosen, ["wh-1", "wh-2"])
    assert plan.now == ((EMAIL, EMAIL), (WEBHOOK, "wh-1"), (WEBHOOK, "wh-2"))


def test_digest_kinds_wait_for_the_daily_digest():
    chosen = choose_preferences(
        None, {ACCESS_DENIED: {"channels": [WEBHOOK], "delivery": DAILY_DIGEST}}
    )
    plan = route(ACCESS_DENIED, chosen, ["wh-1"])
    assert plan.now == () and plan.digest == (WEBHOOK,)


def test_break_glass_goes_at_once_to_every_configured_channel_whatever_the_preferences():
    chosen = choose_preferences("p@example.org", {})
    assert route(BREAK_GLASS, chosen, ["wh-1"]).now == ((EMAIL, EMAIL), (WEBHOOK, "wh-1"))
    assert chosen.effective(has_webhook=True)[BREAK_GLASS].channels == {INBOX, EMAIL, WEBHOOK}


def test_break_glass_cannot_be_put_in_a_digest():
    with pytest.raises(InvalidInput, match="always immediate"):
        choose_preferences(None, {BREAK_GLASS: {"channels": [INBOX], "delivery": DAILY_DIGEST}})


def test_the_email_channel_needs_an_address():
    with pytest.raises(InvalidInput, match="email address"):
        choose_preferences(None, {RECORD_ACCESSED: {"channels": [EMAIL]}})


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap():
    policy = RetryPolicy(max_attempts=5, first_delay_seconds=10, max_delay_seconds=60)
    assert policy.delay_after(1, 0.0) == timedelta(seconds=5)
    assert policy.delay_after(1, 0.999).total_seconds() == pytest.approx(10, abs=0.01)
    assert policy.delay_after(3, 0.0) == timedelta(seconds=20)
    assert policy.delay_after(10, 0.999).total_seconds() == pytest.approx(60, abs=0.1)
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)


def _notification(n: int, urgent: bool = False) -> Notification:
    return Notification(
        id=f"n-{n}",
        kind=RECORD_ACCESSED,
        patient="p-1",
        title="Your records were read",
        body=f"practitioner dr-{n} read 1 record (Observation) for treatment.",
        urgent=urgent,
        details={"record_ids": [f"r-{n}"]},
        occurred_at=NOW,
        created_at=NOW + timedelta(minutes=n),
    )


def test_an_urgent_message_says_so_in_its_subject():
    assert message_for(_notification(1, urgent=True)).subject.startswith("[Urgent] ")


def test_a_webhook_payload_follows_the_standard_webhooks_shape():
    payload = message_for(_notification(1)).payload
    assert payload["type"] == "notification.created"
    assert payload["data"]["id"] == "n-1" and payload["data"]["patient"] == "p-1"


def test_a_digest_is_one_message_listing_every_notification_oldest_first():
    message = digest_message("p-1", "d-1", [_notification(2), _notification(1)], NOW)
    assert message.subject == "Your caretrail summary for 2025-06-01: 2 notifications"
    assert message.text.index("dr-1") < message.text.index("dr-2")
    assert [n["id"] for n in message.payload["data"]["notifications"]] == ["n-1", "n-2"]
