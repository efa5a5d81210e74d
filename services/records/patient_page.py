"""The patient page: one static page that works the four services' public APIs in a browser.

Records serves it because the chart is the patient's first reason to come; the page calls
consent, audit and notify on their own origins, which allow it through CORS
(`shared/cors.py`). The page learns where they are from the HTML it is served in, holds no
data of its own and sends the patient's token with each call. Scripts and styles come only
from this origin (no CDN, nothing inline), and the page may connect only to the four services
and, when one is configured, the identity provider.

Signing in: a pasted token always works; with `CARETRAIL_OIDC_ISSUER` and
`CARETRAIL_OIDC_CLIENT_ID` the page also signs in with that OpenID Connect provider, as a
public client using the authorization code flow with PKCE (RFC 7636), the flow OAuth 2.0 for
browser-based apps recommends. The services must then verify the provider's tokens
(`CARETRAIL_JWKS_URL`, issuer, audience) and the tokens must carry caretrail's `role` and
`patient` claims.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, render_template

from shared.config import public_url

OTHER_SERVICES = ("consent", "audit", "notify")
DEFAULT_OIDC_SCOPE = "openid patient/*.cruds"

patient_page = Blueprint(
    "patient_page",
    __name__,
    template_folder="templates",
    static_folder="static/patient",
    static_url_path="/patient/assets",
)


@dataclass(frozen=True)
class IdentityProvider:
    """The OpenID Connect provider patients sign in with."""

    issuer: str
    client_id: str
    scope: str

    @property
    def origin(self) -> str:
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PageSetup:
    """Where the page finds each service and its identity provider; read once at start."""

    services: dict[str, str]
    identity_provider: IdentityProvider | None

    @classmethod
    def from_env(cls) -> PageSetup:
        # Records is the page's own origin: called on '' so a page opened by another host
        # name (localhost or 127.0.0.1) still reaches it.
        services = {"records": "", **{s: public_url(s) for s in OTHER_SERVICES}}
        issuer = os.environ.get("CARETRAIL_OIDC_ISSUER", "").rstrip("/")
        client_id = os.environ.get("CARETRAIL_OIDC_CLIENT_ID", "")
        provider = None
        if issuer and client_id:
            scope = os.environ.get("CARETRAIL_OIDC_SCOPE", DEFAULT_OIDC_SCOPE)
            provider = IdentityProvider(issuer, client_id, scope)
        return cls(services, provider)

    def as_json(self) -> dict[str, Any]:
        provider = self.identity_provider
        return {"services": self.services, "oidc": asdict(provider) if provider else None}

    def content_security_policy(self) -> str:
        reachable = [self.services[s] for s in OTHER_SERVICES]
        if self.identity_provider:
            reachable.append(self.identity_provider.origin)
        return (
            f"default-src 'none'; script-src 'self'; style-src 'self'; "
            f"connect-src 'self' {' '.join(reachable)}; img-src 'self' blob: data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )


@patient_page.route("/patient")
def show_patient_page() -> Response:
    """Show the patient page."""
    setup: PageSetup = current_app.extensions["records.patient_page"]
    page = render_template("patient.html", setup=setup.as_json())
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = setup.content_security_policy()
    # The provider sends the sign-in code back in the query: no Referer may carry it on.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@patient_page.after_request
def _no_sniffing(response: Response) -> Response:
    # The page's script and style are files: a browser must take them as the type they are.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
