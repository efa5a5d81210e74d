"""The Flask application every service is built on.

It gives each service the same edges: RFC 9457 problem+json for every error (and a 500 that
says nothing of the internals), request ids, a body size limit, JSON-only bodies, bearer-token
authentication, CORS for caretrail's own pages, `/healthz`, `/readyz`, `/metrics`,
`/openapi.json` and Swagger UI at `/docs` with its assets served from the `flask-swagger-ui`
package (no CDN).
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from functools import cache, lru_cache, wraps
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, jsonify, request
from flask_smorest import Blueprint
from flask_swagger_ui import get_swaggerui_blueprint
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from shared.auth import Principal, TokenVerifier
from shared.config import Settings
from shared.cors import allow_page_origins
from shared.errors import DomainError
from shared.fact_signing import public_pem, signing_key
from shared.problems import PROBLEM_JSON, ProblemResponses, ServiceApi, field_errors
from shared.telemetry import instrument_engine, instrument_flask, setup_tracing

log = logging.getLogger(__name__)

# Where a service publishes the public key its facts are signed with (PEM).
FACT_KEY_PATH = "/.well-known/caretrail-fact-signing-key"
ReadyCheck = Callable[[], None]
View = TypeVar("View", bound=Callable[..., Any])


@cache
def _metrics() -> tuple[Counter, Histogram]:
    # Created once per process, on first use: prometheus_client picks its multiprocess value
    # class from PROMETHEUS_MULTIPROC_DIR, which gunicorn's config sets before the app loads.
    requests_total = Counter(
        "caretrail_http_requests_total",
        "HTTP requests answered",
        ["service", "method", "endpoint", "status"],
    )
    latency = Histogram(
        "caretrail_http_request_seconds",
        "HTTP request latency",
        ["service", "method", "endpoint"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    )
    return requests_total, latency


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    body["request_id"] = g.get("request_id")
    body.update({k: v for k, v in extra.items() if v is not None and k != "errors"})
    errors = field_errors(extra.get("errors"))
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def _on_http_error(err: HTTPException) -> Response:
    data = getattr(err, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    if isinstance(getattr(err, "exc", None), ValueError):  # webargs: JSONDecodeError, Unicode…
        response = problem(400, err.name, "the body is not valid JSON")
    else:
        response = problem(err.code or 500, err.name, _detail(err, data, errors), errors=errors)
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    allowed = getattr(err, "valid_methods", None)
    if err.code == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _detail(err: HTTPException, data: dict[str, Any], errors: Any) -> str | None:
    # webargs' 422 carries werkzeug's generic description; this one says where to look.
    if err.code == 422 and errors:
        return "the request does not fit this operation: see errors"
    detail: str | None = data.get("message") or err.description
    return detail


def _on_domain_error(err: DomainError) -> Response:
    response = problem(err.status, err.title, err.detail, errors=err.errors)
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="caretrail"'
    return response


def _on_unexpected(err: Exception) -> Response:
    # The stack stays in the log, frames only: a message can carry the data that caused it.
    log.error(
        "unhandled %s on %s %s\n%s",
        type(err).__name__,
        request.method,
        request.url_rule or "unmatched route",
        "".join(traceback.format_tb(err.__traceback__)),
    )
    return problem(500, "Internal Server Error", "the error was logged under this request id")


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _request_id() -> str:
    # A UUIDv4 from the process's PRNG, not os.urandom: a request id needs to be unique, not
    # secret, and the system call gave the GIL away on every request, to wait for it back.
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def _before_request() -> None:
    g.request_id = request.headers.get("X-Request-ID") or _request_id()
    g.started = time.perf_counter()
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    if request.method in ("POST", "PUT", "PATCH") and has_body and not _is_json(request.mimetype):
        raise UnsupportedMediaType("send the body as application/json")


@lru_cache(maxsize=1024)  # bounded: a client picks the method
def _answered(service: str, method: str, endpoint: str, status: int) -> Any:
    # The labelled child, looked up once: `labels()` validated and locked on every request.
    return _metrics()[0].labels(service, method, endpoint, str(status))


@lru_cache(maxsize=1024)
def _latency(service: str, method: str, endpoint: str) -> Any:
    return _metrics()[1].labels(service, method, endpoint)


def _after_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    service = current_app.config["CARETRAIL_SERVICE"]
    _answered(service, request.method, endpoint, response.status_code).inc()
    if "started" in g:
        _latency(service, request.method, endpoint).observe(time.perf_counter() - g.started)
    return response


def _metrics_view() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)


def _ready_view(checks: dict[str, ReadyCheck]) -> Callable[[], tuple[Response, int]]:
    def ready() -> tuple[Response, int]:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as err:
                results[name] = f"unavailable: {type(err).__name__}"
        ok = all(v == "ok" for v in results.values())
        return jsonify({"status": "ok" if ok else "unavailable", "checks": results}), (
            200 if ok else 503
        )

    return ready


def database_ready(engine: Any) -> ReadyCheck:
    from shared.db import ping

    return lambda: ping(engine)


def kafka_ready(bootstrap_servers: str, cache_seconds: float = 5.0) -> ReadyCheck:
    """A readiness check of the broker that asks it at most every `cache_seconds`."""
    from shared.broker import reachable

    last: dict[str, float | bool] = {"at": float("-inf"), "ok": False}

    def check() -> None:
        now = time.monotonic()
        if now - float(last["at"]) > cache_seconds:
            last.update(at=now, ok=reachable(bootstrap_servers, timeout_seconds=1.0))
        if not last["ok"]:
            raise ConnectionError("the Kafka broker does not answer")

    return check


def create_service_app(
    settings: Settings,
    *,
    title: str,
    blueprints: Iterable[Blueprint],
    engine: Any = None,
    ready_checks: dict[str, ReadyCheck] | None = None,
    description: str = "",
) -> Flask:
    """A Flask app with caretrail's edges around the service's blueprints.

    With the service's `engine`, the app traces its statements and is ready when the database
    and the broker answer; `ready_checks` replaces those checks.
    """
    settings.refuse_weak_secrets()
    setup_tracing(settings.service)
    # Every fact this process emits is signed: without its key, refuse to start rather than
    # fail at the first fact.
    fact_key = signing_key(settings.service)
    if engine is not None:
        instrument_engine(engine)
    if ready_checks is None:
        ready_checks = {"kafka": kafka_ready(settings.kafka_bootstrap_servers)}
        if engine is not None:
            ready_checks = {"database": database_ready(engine), **ready_checks}
    app = Flask(f"caretrail.{settings.service}")
    app.config.update(
        CARETRAIL_SERVICE=settings.service,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE=title,
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
            "security": [{"bearer": []}],
        },
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # FHIR reads best resourceType first
    app.extensions["caretrail.settings"] = settings
    app.extensions["caretrail.verifier"] = TokenVerifier(settings)
    api = ServiceApi(app, spec_kwargs={"extra_plugins": [ProblemResponses()]})
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(DomainError, _on_domain_error)
    app.register_error_handler(Exception, _on_unexpected)
    app.before_request(_before_request)
    app.after_request(_after_request)
    allow_page_origins(app, settings.page_origins)

    app.add_url_rule("/healthz", "healthz", lambda: jsonify({"status": "ok"}))
    app.add_url_rule("/readyz", "readyz", _ready_view(ready_checks))
    app.add_url_rule("/metrics", "metrics", _metrics_view)
    published = public_pem(fact_key.public_key())
    app.add_url_rule(
        FACT_KEY_PATH,
        "fact_signing_key",
        lambda: Response(published, mimetype="application/x-pem-file"),
    )
    app.register_blueprint(
        get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": title}),
        url_prefix="/docs",
    )
    instrument_flask(app)
    return app


def current_principal() -> Principal:
    """The principal of the request's bearer token; 401 when it has no valid one."""
    if "principal" not in g:
        verifier: TokenVerifier = current_app.extensions["caretrail.verifier"]
        g.principal = verifier.verify_header(request.headers.get("Authorization"))
    principal: Principal = g.principal
    return principal


def authorized_by(rule: Callable[..., None]) -> Callable[[View], View]:
    """Decide who may call a view before anything they sent is read.

    flask-smorest's `blp.arguments` loads the body and query before the view runs, so a rule
    checked in the view came after them: a patient writing nonsense to another patient's chart
    learnt 422 (and what the API expects) instead of 403. Placed between `blp.route` and
    `blp.arguments`, `rule(principal, **path_parameters)` runs first; it raises to refuse.
    The rule is given the path parameters it names (`patient`, not a record id it ignores).
    """
    named = set(list(inspect.signature(rule).parameters)[1:])

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **path_parameters: Any) -> Any:
            rule(current_principal(), **{k: path_parameters[k] for k in named})
            return view(*args, **path_parameters)

        return cast(View, guarded)

    return decorate


def service_settings() -> Settings:
    settings: Settings = current_app.extensions["caretrail.settings"]
    return settings
