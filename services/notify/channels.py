"""The channels a delivery goes out on: signed webhooks and email.

A webhook is called at an address checked just before the call and pinned for it: the host
name is resolved, every address must pass the SSRF guard, and the connection goes to that
address (TLS still verifies the host name), so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot point the call at an internal address. Redirects
are not followed.
"""

from __future__ import annotations

import html
import http.client
import json
import smtplib
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from services.notify.domain import WebhookTarget, parse_webhook_url, safe_addresses
from services.notify.store import ClaimedDelivery
from shared.errors import InvalidInput

Resolver = Callable[[str, int], list[str]]


class DeliveryError(Exception):
    """A send that did not go through; `permanent` when retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (none when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: WebhookTarget, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: WebhookTarget, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class WebhookSender:
    """POSTs the notification's JSON, signed per the Standard Webhooks spec; the delivery id
    is the `webhook-id`, the same on every retry so receivers can deduplicate."""

    def __init__(
        self, *, allow_loopback: bool, timeout_seconds: float, resolver: Resolver = resolve
    ) -> None:
        self._allow_loopback = allow_loopback
        self._timeout = timeout_seconds
        self._resolve = resolver

    def send(self, job: ClaimedDelivery, destination: dict[str, str]) -> None:
        try:
            target = parse_webhook_url(destination["url"], allow_loopback=self._allow_loopback)
        except InvalidInput as err:
            raise DeliveryError(err.detail, permanent=True) from None
        try:
            addresses = safe_addresses(
                target,
                self._resolve(target.host, target.port),
                allow_loopback=self._allow_loopback,
            )
        except InvalidInput as err:
            raise DeliveryError(err.detail) from None  # DNS answers change: retry later
        body = json.dumps(job.message.payload, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "caretrail-notify",
            "webhook-id": job.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(destination["secret"]).sign(job.id, sent_at, body),
        }
        status = self._post(target, addresses[0], body.encode(), headers)
        if not 200 <= status < 300:
            raise DeliveryError(f"the receiver answered HTTP {status}")

    def _post(
        self, target: WebhookTarget, address: str, body: bytes, headers: dict[str, str]
    ) -> int:
        parts = urlsplit(target.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection_type = (
            _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        )
        connection = connection_type(target, address, self._timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)  # the answer's body is not ours to keep
            return response.status
        except (OSError, http.client.HTTPException) as err:
            reason = f"the receiver could not be reached: {type(err).__name__}"
            raise DeliveryError(reason) from None
        finally:
            connection.close()


_FOOTER = (
    "You receive this because you use caretrail. Choose what you hear about, and how, "
    "in your notification preferences."
)


def email_message(job: ClaimedDelivery, *, to: str, sender: str) -> EmailMessage:
    """Plain text with an HTML alternative; the Message-ID is stable across retries."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = job.message.subject
    message["Message-ID"] = f"<{job.id}@caretrail.notify>"
    message.set_content(f"{job.message.text}\n\n--\n{_FOOTER}\n")
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in job.message.text.splitlines())
    message.add_alternative(
        "<!doctype html><html><body>"
        f"<h1>{html.escape(job.message.subject)}</h1>{paragraphs}"
        f'<p style="color:#666;font-size:small">{html.escape(_FOOTER)}</p>'
        "</body></html>",
        subtype="html",
    )
    return message


class EmailSender:
    """Sends through the SMTP server of `smtp_url` (`smtp://[user:pass@]host:port`, or
    `smtps://` for TLS from the start)."""

    def __init__(self, *, smtp_url: str, sender: str, timeout_seconds: float) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("CARETRAIL_SMTP_URL must look like smtp://host:port")
        self._tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._tls else 25)
        self._login = (parts.username, parts.password or "") if parts.username else None
        self._sender = sender
        self._timeout = timeout_seconds

    def send(self, job: ClaimedDelivery, destination: dict[str, str]) -> None:
        message = email_message(job, to=destination["email"], sender=self._sender)
        smtp_type = smtplib.SMTP_SSL if self._tls else smtplib.SMTP
        try:
            with smtp_type(self._host, self._port, timeout=self._timeout) as smtp:
                if self._login:
                    if not self._tls:
                        smtp.starttls()
                    smtp.login(*self._login)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("the mail server refused the address", permanent=True) from None
        except (OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"the mail server failed: {type(err).__name__}") from None
