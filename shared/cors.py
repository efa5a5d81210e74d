"""Cross-origin calls from caretrail's own pages (the CORS protocol of the Fetch standard).

The patient page is served by records and calls consent, audit and notify on their own
origins, with the token in the `Authorization` header. Only the configured page origins are
answered with CORS headers; any other origin's script gets nothing it can read. No cookie
carries authority, so responses never allow credentials.
https://fetch.spec.whatwg.org/#http-cors-protocol
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, PUT, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type, Accept, X-Purpose-Of-Use"
# The page shows the request id of a failure, so a user can quote it.
EXPOSED_HEADERS = "X-Request-ID, Location"
PREFLIGHT_MAX_AGE_SECONDS = 600


def allow_page_origins(app: Flask, origins: Iterable[str]) -> None:
    """Let scripts of `origins` call the app's API from a browser; nothing for other origins."""
    allowed = frozenset(origins)
    if not allowed:
        return

    def answer_preflight() -> Response | None:
        # A preflight carries no token: it is answered here, before any view or blueprint
        # asks who is calling (notify authenticates every request of its blueprint first).
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if request.headers.get("Origin") not in allowed:
            return None
        return Response(status=204)

    def add_cors_headers(response: Response) -> Response:
        # The answer depends on Origin, so no cache may hand one origin's answer to another.
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
        return response

    app.before_request(answer_preflight)
    app.after_request(add_cors_headers)
