"""What a patient is told about their data, on which channels, and how deliveries retry.

Pure: no I/O. Notices name people, organizations, record categories, ids and purposes, never
clinical content (no codes, values, free text or security labels: a label alone says what
kind of sensitive data the patient has, and a message may travel by email).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from shared.break_glass import reason_display
from shared.errors import InvalidInput
from shared.events import Event

RECORD_ACCESSED = "record-accessed"
BREAK_GLASS = "break-glass"
ACCESS_DENIED = "access-denied"
CONSENT_GRANTED = "consent-granted"
CONSENT_REVOKED = "consent-revoked"
CONSENT_EXPIRED = "consent-expired"
CONSENT_EXPIRING = "consent-expiring"
RECORD_ADDED = "record-added"
REMINDER_DUE = "reminder-due"
KINDS = (
    RECORD_ACCESSED,
    BREAK_GLASS,
    ACCESS_DENIED,
    CONSENT_GRANTED,
    CONSENT_REVOKED,
    CONSENT_EXPIRED,
    CONSENT_EXPIRING,
    RECORD_ADDED,
    REMINDER_DUE,
)

INBOX = "inbox"
WEBHOOK = "webhook"
EMAIL = "email"
CHANNELS = (INBOX, WEBHOOK, EMAIL)
IMMEDIATE = "immediate"
DAILY_DIGEST = "daily_digest"
DELIVERY_MODES = (IMMEDIATE, DAILY_DIGEST)

EXPIRY_WARNING = timedelta(days=7)

_PURPOSES = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "HPAYMT": "payment",
    "HOPERAT": "healthcare operations",
    "HRESCH": "research",
    "PATRQT": "your own request",
}
_VERBS = {
    "read": "read",
    "search": "searched and saw",
    "vread": "read earlier versions of",
    "export": "exported",
}


# --- notices ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A notification to create for a patient, before it is stored."""

    kind: str
    patient: str
    title: str
    body: str
    source_event_id: str
    occurred_at: datetime
    urgent: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """A stored notice, as the patient's inbox shows it."""

    id: str
    kind: str
    patient: str
    title: str
    body: str
    urgent: bool
    details: Mapping[str, Any]
    occurred_at: datetime
    created_at: datetime
    read_at: datetime | None = None


@dataclass(frozen=True)
class ConsentWindow:
    """What notify keeps of a consent: who it names and when it ends."""

    consent_id: str
    patient: str
    grantee_type: str
    grantee_id: str
    ends_at: datetime
    status: str = "active"


def notice_for(event: Event, *, consent: ConsentWindow | None = None) -> Notice | None:
    """The notice an event calls for, or None (the patient's own doing, or nothing to tell).

    `consent` is notify's own record of the consent a consent event names, when it has one.
    """
    patient = str(event.data.get("patient") or event.subject)
    if _is_patients_own(event, patient):
        return None
    compose = _COMPOSERS.get(event.short_type)
    return compose(event, patient, consent) if compose else None


def _is_patients_own(event: Event, patient: str) -> bool:
    data = event.data
    if event.actor == f"patient:{patient}":
        return True
    if "role" not in data:
        # Writes and consent changes: records and consent let a patient token act only on its
        # own chart, whatever its subject is called.
        return event.actor.startswith("patient:")
    if data.get("role") != "patient":
        return False
    # A patient token is only ever permitted on its own chart (no proxies yet), whatever its
    # subject is called: only a refused attempt on someone else's chart concerns that patient.
    return data.get("actor") in (patient, f"patient:{patient}") or data.get("outcome") == "permit"


def _person(actor: str, role: str | None = None) -> str:
    """`practitioner:dr-lee` (or `dr-lee` with its role) as `practitioner dr-lee`."""
    if ":" in actor:
        role, actor = actor.split(":", 1)
    return f"{role} {actor}" if role else actor


def _who(data: Mapping[str, Any]) -> str:
    who = _person(data["actor"], data["role"])
    return f"{who} of {data['org']}" if data.get("org") else who


def _categories(categories: Iterable[str]) -> str:
    names = sorted(set(categories))
    if not names or names == ["*"]:
        return "all"
    return ", ".join(names)


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def _access_details(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "actor": data["actor"],
        "role": data["role"],
        "org": data.get("org"),
        "action": data["action"],
        "record_ids": list(data["record_ids"]),
        "categories": sorted(set(data["categories"])),
        "purpose": data["purpose"],
        "consent_ids": list(data.get("consent_ids") or []),
    }


def _access(event: Event, patient: str, _consent: ConsentWindow | None) -> Notice | None:
    data = event.data
    details = _access_details(data)
    purpose = _PURPOSES.get(data["purpose"], data["purpose"])
    if data["outcome"] == "deny":
        asked = f" ({_categories(data['categories'])})" if data["categories"] else ""
        return Notice(
            kind=ACCESS_DENIED,
            patient=patient,
            title="Someone was refused access to your records",
            body=(
                f"{_who(data)} asked to {data['action']} your records{asked} "
                f"for {purpose} and was refused."
            ),
            source_event_id=event.id,
            occurred_at=event.time,
            details=details,
        )
    if data.get("break_glass_reason"):
        # The reason is told only as a code's words. The practitioner's note (sealed in the
        # fact) is never read here, nor is the free text that facts of before reasons were
        # coded carry in the reason: either may describe the patient's condition, and a
        # notification travels by email and webhook. The patient sees the access in their
        # accounting of disclosures.
        said = reason_display(data["break_glass_reason"])
        because = f" The reason given: {said}." if said else ""
        return Notice(
            kind=BREAK_GLASS,
            patient=patient,
            title="Emergency access to your records",
            body=(
                f"{_who(data)} used emergency (break-the-glass) access and {_disclosed(details)} "
                f"for {purpose}.{because} Compliance staff review every emergency access."
            ),
            source_event_id=event.id,
            occurred_at=event.time,
            urgent=True,
            details={
                **details,
                "break_glass": True,
                "break_glass_reason": data["break_glass_reason"] if said else None,
            },
        )
    if not data["record_ids"]:
        return None  # nothing of the patient's was disclosed
    read_at = event.time.astimezone(UTC).isoformat()
    details = {**details, "requests": 1, "first_read_at": read_at, "last_read_at": read_at}
    return Notice(
        kind=RECORD_ACCESSED,
        patient=patient,
        title="Your records were read",
        body=read_body(details),
        source_event_id=event.id,
        occurred_at=event.time,
        details=details,
    )


def read_body(details: Mapping[str, Any]) -> str:
    """What a read notice says: who saw how many records, why, and in how many requests when
    several reads were folded into it."""
    purpose = _PURPOSES.get(details["purpose"], details["purpose"])
    consents = details["consent_ids"]
    under = f" under consent {', '.join(consents)}" if consents else ""
    return f"{_who(details)} {_disclosed(details)} for {purpose}{under}{_requests(details)}."


def _disclosed(details: Mapping[str, Any]) -> str:
    """`read 2 records (Observation)`: the verb of the action and what it reached."""
    verb = _VERBS.get(details["action"], details["action"])
    return f"{verb} {_records(len(details['record_ids']))} ({_categories(details['categories'])})"


def _requests(details: Mapping[str, Any]) -> str:
    count = details["requests"]
    if count == 1:
        return ""
    first = datetime.fromisoformat(details["first_read_at"]).astimezone(UTC)
    last = datetime.fromisoformat(details["last_read_at"]).astimezone(UTC)
    if f"{first:%H:%M}" == f"{last:%H:%M}":
        return f" ({count} requests at {first:%H:%M} UTC)"
    return f" ({count} requests between {first:%H:%M} and {last:%H:%M} UTC)"


def _record_added(event: Event, patient: str, _consent: ConsentWindow | None) -> Notice | None:
    data = event.data
    if data["source"] != "ehr":
        return None
    by = _person(data["author"])
    if data.get("author_org"):
        by = f"{by} of {data['author_org']}"
    return Notice(
        kind=RECORD_ADDED,
        patient=patient,
        title="A provider added to your records",
        body=f"{by} added a record to your chart ({data['category']}, {data['record_id']}).",
        source_event_id=event.id,
        occurred_at=event.time,
        details={
            "record_id": data["record_id"],
            "category": data["category"],
            "author": data["author"],
            "author_org": data.get("author_org"),
        },
    )


def _day(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _granted(event: Event, patient: str, _consent: ConsentWindow | None) -> Notice:
    data = event.data
    grantee = f"{data['grantee']['type']} {data['grantee']['id']}"
    purposes = ", ".join(_PURPOSES.get(p, p) for p in data["purposes"])
    return Notice(
        kind=CONSENT_GRANTED,
        patient=patient,
        title="A consent to share your records was granted",
        body=(
            f"Consent {data['consent_id']} lets {grantee} {' and '.join(data['actions'])} "
            f"your records ({_categories(data['categories'])}) for {purposes} "
            f"until {_day(data['period']['end'])}."
        ),
        source_event_id=event.id,
        occurred_at=event.time,
        details={
            "consent_id": data["consent_id"],
            "grantee": dict(data["grantee"]),
            "categories": list(data["categories"]),
            "purposes": list(data["purposes"]),
            "ends_at": data["period"]["end"],
        },
    )


def _consent_named(consent_id: str, consent: ConsentWindow | None) -> str:
    if consent is None:
        return f"Consent {consent_id}"
    return f"Consent {consent_id} ({consent.grantee_type} {consent.grantee_id})"


Composer = Callable[[Event, str, ConsentWindow | None], Notice | None]


def _ended(kind: str, title: str, verb: str) -> Composer:
    def compose(event: Event, patient: str, consent: ConsentWindow | None) -> Notice:
        consent_id = event.data["consent_id"]
        return Notice(
            kind=kind,
            patient=patient,
            title=title,
            body=f"{_consent_named(consent_id, consent)} {verb}; it no longer shares your records.",
            source_event_id=event.id,
            occurred_at=event.time,
            details={"consent_id": consent_id},
        )

    return compose


def _reminder_due(event: Event, patient: str, _consent: ConsentWindow | None) -> Notice:
    """A preventive-care reminder fell due. The rule id names a test or a vaccine, and a message
    may travel by email: the notice says only that one is due, and when."""
    return Notice(
        kind=REMINDER_DUE,
        patient=patient,
        title="A preventive-care reminder is due",
        body="A preventive-care reminder is due: open your app",
        source_event_id=event.id,
        occurred_at=event.time,
        details={"due_date": event.data["due_date"]},
    )


_COMPOSERS: dict[str, Composer] = {
    "record.accessed": _access,
    "access.denied": _access,
    "record.exported": _access,
    "record.created": _record_added,
    "consent.granted": _granted,
    "consent.revoked": _ended(CONSENT_REVOKED, "A consent was revoked", "was revoked"),
    "consent.expired": _ended(CONSENT_EXPIRED, "A consent has expired", "has expired"),
    "reminder.due": _reminder_due,
}


def expiring_notice(consent: ConsentWindow, now: datetime) -> Notice | None:
    """The warning that an active consent ends within seven days (once per consent)."""
    if consent.status != "active" or not now < consent.ends_at <= now + EXPIRY_WARNING:
        return None
    return Notice(
        kind=CONSENT_EXPIRING,
        patient=consent.patient,
        title="A consent ends soon",
        body=(
            f"{_consent_named(consent.consent_id, consent)} ends on {_day(consent.ends_at)}. "
            "Grant a new one if you want to keep sharing."
        ),
        source_event_id=f"consent-expiring:{consent.consent_id}",
        occurred_at=now,
        details={"consent_id": consent.consent_id, "ends_at": consent.ends_at.isoformat()},
    )


# --- folding reads ------------------------------------------------------------------------

# Issue 12 item 6: reads by one reader, for one purpose, of one patient within this window are
# one notification that counts them. Break-glass reads and refusals always stand alone.
READ_WINDOW = timedelta(minutes=15)


def fold_key(notice: Notice) -> str | None:
    """What a read shares with the reads it folds with: the patient, the reader (and the org
    they act for), the action and the purpose; None for a notice that stands alone."""
    if notice.kind != RECORD_ACCESSED:
        return None
    named = [notice.patient, *(notice.details[k] for k in ("actor", "org", "action", "purpose"))]
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()


@dataclass(frozen=True)
class ReadFold:
    """A notification that reads of one fold key join until `ends_at` (event time, never the
    wall clock: a replay folds the same reads together)."""

    notification_id: str
    starts_at: datetime
    ends_at: datetime
    details: Mapping[str, Any]

    def takes(self, notice: Notice) -> bool:
        """Whether the read joins this fold: before its end, and not a whole window before its
        start (a read that arrives late, or from a web process whose clock is behind)."""
        window = self.ends_at - self.starts_at
        return self.starts_at - window < notice.occurred_at < self.ends_at

    def with_read(self, notice: Notice) -> ReadFold:
        """This fold with one more read counted: its records, categories and consents added."""
        ours, theirs = self.details, notice.details
        first = min(datetime.fromisoformat(ours["first_read_at"]), notice.occurred_at)
        last = max(datetime.fromisoformat(ours["last_read_at"]), notice.occurred_at)
        details = {
            **ours,
            "record_ids": list(dict.fromkeys([*ours["record_ids"], *theirs["record_ids"]])),
            "categories": sorted({*ours["categories"], *theirs["categories"]}),
            "consent_ids": list(dict.fromkeys([*ours["consent_ids"], *theirs["consent_ids"]])),
            "requests": ours["requests"] + 1,
            "first_read_at": first.astimezone(UTC).isoformat(),
            "last_read_at": last.astimezone(UTC).isoformat(),
        }
        return replace(self, details=details)

    @property
    def body(self) -> str:
        return read_body(self.details)


def opened_by(notification_id: str, notice: Notice, window: timedelta) -> ReadFold:
    """The fold a read opens when none takes it: it ends one window after that read."""
    start = notice.occurred_at
    return ReadFold(notification_id, start, start + window, notice.details)


@dataclass
class FoldPlan:
    """What a run of reads does to their folds."""

    counted: list[tuple[Notice, str]] = field(default_factory=list)  # (read, notification id)
    opened: dict[str, tuple[str, Notice]] = field(default_factory=dict)  # id: (key, first read)
    folds: dict[str, ReadFold] = field(default_factory=dict)  # id: every fold touched, as it ends


def fold_reads(
    latest: dict[str, ReadFold | None],
    reads: Sequence[tuple[str, Notice]],
    window: timedelta,
    new_id: Callable[[], str],
) -> FoldPlan:
    """Count each (fold key, read), in order, in the latest fold of its key if that takes it,
    else in a fold it opens. `latest` (each key's fold that starts last) is kept up to date."""
    plan = FoldPlan()
    for key, read in reads:
        fold = latest[key]
        if fold is not None and fold.takes(read):
            counted_in = fold.with_read(read)
        else:
            counted_in = opened_by(new_id(), read, window)
            plan.opened[counted_in.notification_id] = (key, read)
        plan.folds[counted_in.notification_id] = counted_in
        plan.counted.append((read, counted_in.notification_id))
        if fold is None or counted_in.starts_at >= fold.starts_at:
            latest[key] = counted_in  # not a fold that a late read opened before the latest
    return plan


# --- preferences and routing --------------------------------------------------------------


@dataclass(frozen=True)
class KindPreference:
    channels: frozenset[str] = frozenset({INBOX})
    delivery: str = IMMEDIATE


@dataclass(frozen=True)
class Preferences:
    """How a patient wants to hear about each kind; kinds not named use the default."""

    email: str | None = None
    kinds: Mapping[str, KindPreference] = field(default_factory=dict)

    def for_kind(self, kind: str) -> KindPreference:
        return self.kinds.get(kind, KindPreference())

    def effective(self, has_webhook: bool) -> dict[str, KindPreference]:
        """Every kind's preference as deliveries will follow it."""
        view = {kind: self.for_kind(kind) for kind in KINDS}
        view[BREAK_GLASS] = KindPreference(
            frozenset({INBOX} | _configured(self.email, has_webhook)), IMMEDIATE
        )
        return view


def _configured(email: str | None, has_webhook: bool) -> set[str]:
    return ({EMAIL} if email else set()) | ({WEBHOOK} if has_webhook else set())


def choose_preferences(email: str | None, kinds: Mapping[str, Mapping[str, Any]]) -> Preferences:
    """The patient's choice, checked: the inbox always, break-glass always immediate."""
    chosen: dict[str, KindPreference] = {}
    for kind, choice in kinds.items():
        channels = frozenset(choice.get("channels", ())) | {INBOX}
        delivery = choice.get("delivery", IMMEDIATE)
        if kind == BREAK_GLASS:
            if delivery != IMMEDIATE:
                raise InvalidInput(
                    "break-glass notifications are always immediate, on every channel"
                )
            continue  # always on every configured channel: nothing to keep
        if EMAIL in channels and not email:
            raise InvalidInput(f"{kind}: the email channel needs an email address")
        chosen[kind] = KindPreference(channels, delivery)
    return Preferences(email=email, kinds=chosen)


@dataclass(frozen=True)
class Route:
    """Where a new notification goes besides the inbox: now, or in the next digest."""

    now: tuple[tuple[str, str], ...]  # (channel, target)
    digest: tuple[str, ...]  # channels


def route(kind: str, preferences: Preferences, webhook_ids: Sequence[str]) -> Route:
    if kind == BREAK_GLASS:
        channels = _configured(preferences.email, bool(webhook_ids))
        return Route(targets(channels, preferences, webhook_ids), ())
    choice = preferences.for_kind(kind)
    pushed = sorted(choice.channels - {INBOX})
    if choice.delivery == DAILY_DIGEST:
        return Route((), tuple(pushed))
    return Route(targets(pushed, preferences, webhook_ids), ())


def targets(
    channels: Iterable[str], preferences: Preferences, webhook_ids: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """(channel, target) pairs: one per registered webhook, one for the email address."""
    found: list[tuple[str, str]] = []
    for channel in sorted(channels):
        if channel == WEBHOOK:
            found.extend((WEBHOOK, webhook_id) for webhook_id in webhook_ids)
        elif channel == EMAIL and preferences.email:
            found.append((EMAIL, EMAIL))
    return tuple(found)


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """What one delivery sends: an email's subject and text, a webhook's JSON payload."""

    subject: str
    text: str
    payload: Mapping[str, Any]


def _summary(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "urgent": notification.urgent,
        "details": dict(notification.details),
        "occurred_at": notification.occurred_at.isoformat(),
    }


def message_for(notification: Notification) -> Message:
    subject = ("[Urgent] " if notification.urgent else "") + notification.title
    return Message(
        subject=subject,
        text=notification.body,
        payload={
            "type": "notification.created",
            "timestamp": notification.created_at.isoformat(),
            "data": {"patient": notification.patient, **_summary(notification)},
        },
    )


def digest_message(
    patient: str, digest_id: str, notifications: Sequence[Notification], now: datetime
) -> Message:
    """One message summarising several notifications (oldest first)."""
    ordered = sorted(notifications, key=lambda n: n.created_at)
    count = len(ordered)
    lines = [f"- {n.created_at:%H:%M} UTC: {n.title}. {n.body}" for n in ordered]
    return Message(
        subject=f"Your caretrail summary for {now:%Y-%m-%d}: {count} notification"
        + ("" if count == 1 else "s"),
        text="\n".join(lines),
        payload={
            "type": "notification.digest",
            "timestamp": now.isoformat(),
            "data": {
                "id": digest_id,
                "patient": patient,
                "notifications": [_summary(n) for n in ordered],
            },
        },
    )


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped in delay and in the number of attempts."""

    max_attempts: int = 8
    first_delay_seconds: float = 5.0
    max_delay_seconds: float = 3600.0

    def gives_up_after(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def delay_after(self, attempts: int, jitter: float) -> timedelta:
        """The wait after the `attempts`-th failure; `jitter` in [0, 1) spreads retries of
        many deliveries that failed together over the upper half of the window."""
        ceiling = min(self.max_delay_seconds, self.first_delay_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=ceiling * (0.5 + jitter / 2))


# --- webhooks -----------------------------------------------------------------------------

SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    scheme: str
    host: str
    port: int


def parse_webhook_url(url: str, *, allow_loopback: bool) -> WebhookTarget:
    """The parts of a webhook URL, or `InvalidInput` (https only; http to loopback if allowed)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("the webhook URL is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("the webhook URL must be an https:// URL with a host name")
    if parts.username or parts.password:
        raise InvalidInput("the webhook URL must not carry credentials")
    if parts.scheme == "http" and not allow_loopback:
        raise InvalidInput("the webhook URL must use https")
    default_port = 443 if parts.scheme == "https" else 80
    return WebhookTarget(url, parts.scheme, parts.hostname, port or default_port)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def safe_addresses(
    target: WebhookTarget, addresses: Sequence[str], *, allow_loopback: bool
) -> list[str]:
    """The addresses of the target host when every one may be called, else `InvalidInput`.

    Private, link-local (cloud metadata at 169.254.169.254), unspecified, multicast and
    reserved addresses are refused; loopback only when local use is allowed by config.
    """
    if not addresses:
        raise InvalidInput(f"the webhook host {target.host} does not resolve")
    for text in addresses:
        address = _address(text)
        if address.is_loopback:
            if not allow_loopback:
                raise InvalidInput("the webhook URL points at this machine (loopback)")
        elif not address.is_global or address.is_multicast:
            raise InvalidInput(
                f"the webhook URL points at a non-public address ({address}); refused"
            )
        elif target.scheme == "http":
            raise InvalidInput("the webhook URL must use https")
    return list(addresses)


def webhook_secret(given: str | None, fresh_bytes: bytes) -> str:
    """The given secret when it is a valid Standard Webhooks secret, or a new one."""
    if given is None:
        return SECRET_PREFIX + base64.b64encode(fresh_bytes).decode()
    try:
        raw = base64.b64decode(given.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the webhook secret must be whsec_ followed by base64") from None
    if not given.startswith(SECRET_PREFIX) or not 24 <= len(raw) <= 64:
        raise InvalidInput("the webhook secret must be whsec_ + base64 of 24 to 64 bytes")
    return given
