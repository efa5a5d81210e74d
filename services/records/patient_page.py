"""The patient page: one static page that works the four services' public APIs in a browser.

Records serves it because the chart is the patient's first reason to come; the page calls
consent, audit and notify on their own origins, which allow it through CORS
(`shared/cors.py`). The page learns where they are from the HTML it is served in, holds no
data of its own and sends the patient's token with each call. Scripts and styles come only
from this origin (no CDN, nothing inline), and the page may connect only to the four services.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from shared.config import public_url

OTHER_SERVICES = ("consent", "audit", "notify")

patient_page = Blueprint(
    "patient_page",
    __name__,
    template_folder="templates",
    static_folder="static/patient",
    static_url_path="/patient/assets",
)


@patient_page.route("/patient")
def show_patient_page() -> Response:
    """Show the patient page."""
    # Records is the page's own origin: called on '' so a page opened by another host name
    # (localhost or 127.0.0.1) still reaches it.
    services = {"records": "", **{s: public_url(s) for s in OTHER_SERVICES}}
    response = Response(render_template("patient.html", services=services), mimetype="text/html")
    others = " ".join(services[s] for s in OTHER_SERVICES)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' {others}; "
        "img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@patient_page.after_request
def _no_sniffing(response: Response) -> Response:
    # The page's script and style are files: a browser must take them as the type they are.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
