"""The compliance console: one server-rendered page that works the JSON API in the browser.

The page holds no data of its own; its script sends the pasted token with each API call.
Everything it needs is inline, and a per-response nonce lets only that inline code run.
It is written for a compliance officer, not an engineer: event types, purposes of use and
break-glass reasons are shown in words, with the code the trail keeps beside them.
"""

from __future__ import annotations

import json
import secrets

from flask import Blueprint, Response, render_template

from shared.break_glass import REASONS as BREAK_GLASS_REASONS
from shared.events import PURPOSES, REGISTRY, SPEC_PREFIX, SPEC_SUFFIX

console = Blueprint("console", __name__, template_folder="templates")

EVENT_WORDS = {
    "record.accessed": "Record read",
    "access.denied": "Access refused",
    "record.exported": "Records exported",
    "record.created": "Record added",
    "record.amended": "Record amended",
    "record.entered-in-error": "Record marked entered in error",
    "patient.erased": "Patient's data erased",
    "consent.granted": "Consent granted",
    "consent.revoked": "Consent revoked",
    "consent.expired": "Consent expired",
    "notification.delivered": "Notification delivered",
    "notification.failed": "Notification failed",
    "reminder.due": "Preventive-care reminder fell due",
    "break-glass.reviewed": "Emergency access reviewed",
}
# HL7 v3 PurposeOfUse, as records accepts them in X-Purpose-Of-Use.
PURPOSE_WORDS = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "HPAYMT": "payment",
    "HOPERAT": "healthcare operations",
    "HRESCH": "research",
    "PATRQT": "patient's request",
}


def short_type(name: str) -> str:
    return name.removeprefix(SPEC_PREFIX).removesuffix(SPEC_SUFFIX)


def vocabulary() -> dict[str, dict[str, str]]:
    """The words the page shows for each event type and purpose, keyed by their codes."""
    return {
        "types": {short_type(name): EVENT_WORDS[short_type(name)] for name in REGISTRY},
        "purposes": {code: PURPOSE_WORDS[code] for code in PURPOSES},
        "break_glass_reasons": {reason.code: reason.display for reason in BREAK_GLASS_REASONS},
    }


@console.route("/audit/console")
def show_console() -> Response:
    """Show the compliance console."""
    nonce = secrets.token_urlsafe(16)
    words = vocabulary()
    page = render_template(
        "console.html",
        nonce=nonce,
        types=words["types"],
        purposes=words["purposes"],
        # `<` is escaped so no text in the JSON can close the script element.
        vocabulary=json.dumps(words).replace("<", "\\u003c"),
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
