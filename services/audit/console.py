"""The compliance console: one server-rendered page that works the JSON API in the browser.

The page holds no data of its own; its script sends the pasted token with each API call.
Everything it needs is inline, and a per-response nonce lets only that inline code run.
"""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, render_template

console = Blueprint("console", __name__, template_folder="templates")


@console.route("/audit/console")
def show_console() -> Response:
    """Show the compliance console."""
    nonce = secrets.token_urlsafe(16)
    response = Response(render_template("console.html", nonce=nonce), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
