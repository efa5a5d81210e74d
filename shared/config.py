"""Settings common to every service: defaults, then the environment, then explicit overrides.

Read once at start (in `create_app` or a worker's `main`), never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_PORTS = {"records": 8001, "consent": 8002, "audit": 8003, "notify": 8004}


def service_address(service: str) -> str:
    """Where the service's web process listens: `CARETRAIL_<SERVICE>_BIND` or its default."""
    return os.environ.get(
        f"CARETRAIL_{service.upper()}_BIND", f"127.0.0.1:{DEFAULT_PORTS[service]}"
    )


def public_url(service: str) -> str:
    """Where a browser reaches the service: `CARETRAIL_<SERVICE>_PUBLIC_URL`, or its address.

    Behind a proxy or in a container the address a process listens on is not the one a
    browser can open, so it can be set apart.
    """
    address = f"http://{service_address(service)}"
    return os.environ.get(f"CARETRAIL_{service.upper()}_PUBLIC_URL", address).rstrip("/")


def page_origins() -> tuple[str, ...]:
    """The origins of the pages that call every service from a browser.

    `CARETRAIL_PAGE_ORIGINS` (comma-separated), or records' public origin: records serves the
    patient page, which calls consent, audit and notify on their own origins.
    """
    configured = os.environ.get("CARETRAIL_PAGE_ORIGINS")
    if configured is None:
        return (public_url("records"),)
    return tuple(o.strip().rstrip("/") for o in configured.split(",") if o.strip())


LOCAL_JWT_SECRET = "caretrail-local-development-secret-change-me"
LOCAL_MODE_ENV = "CARETRAIL_LOCAL"
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 section 3.2: a key at least as long as the hash


def is_local_mode() -> bool:
    """Whether this process runs on a developer's machine (`caretrail up`, the demo, the
    tests set `CARETRAIL_LOCAL=1`), where the published development secrets may be used."""
    return os.environ.get(LOCAL_MODE_ENV) == "1"


class PublicSecret(RuntimeError):
    """A deployment configured with a secret that is published in the repository, or too weak."""


def refuse_public_secret(name: str, value: str, development_value: str) -> None:
    """`PublicSecret` when `value` is the published development one outside local mode."""
    if value == development_value and not is_local_mode():
        raise PublicSecret(
            f"{name} is the development value published in the repository; set a secret of "
            f"your own (or CARETRAIL_LOCAL=1 on a developer's machine)"
        )


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    jwt_secret: str = LOCAL_JWT_SECRET
    jwt_issuer: str = "caretrail-local"
    jwt_audience: str = "caretrail"
    jwks_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    # The external SMART identity provider (e.g. Keycloak): its endpoints, and the SMART
    # capabilities it offers (e.g. launch-standalone client-confidential-asymmetric).
    smart_authorization_endpoint: str | None = None
    smart_token_endpoint: str | None = None
    smart_capabilities: tuple[str, ...] = ()
    page_origins: tuple[str, ...] = ()
    # Services add their own keys (e.g. records' master key) under `extra`.
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str, **overrides: Any) -> Settings:
        """Build the settings of `service` from defaults, the environment, then `overrides`."""
        env = os.environ
        prefix = f"CARETRAIL_{service.upper()}_"
        values: dict[str, Any] = {
            "service": service,
            "database_url": env.get(
                f"{prefix}DATABASE_URL",
                env.get("DATABASE_URL", f"sqlite:///var/db/{service}.sqlite3"),
            ),
            "kafka_bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "jwt_secret": env.get("CARETRAIL_JWT_SECRET", LOCAL_JWT_SECRET),
            "jwt_issuer": env.get("CARETRAIL_JWT_ISSUER", "caretrail-local"),
            "jwt_audience": env.get("CARETRAIL_JWT_AUDIENCE", "caretrail"),
            "jwks_url": env.get("CARETRAIL_JWKS_URL") or None,
            "max_body_bytes": int(env.get("CARETRAIL_MAX_BODY_BYTES", 1024 * 1024)),
            "smart_authorization_endpoint": env.get("CARETRAIL_SMART_AUTHORIZATION_ENDPOINT")
            or None,
            "smart_token_endpoint": env.get("CARETRAIL_SMART_TOKEN_ENDPOINT") or None,
            "smart_capabilities": tuple(env.get("CARETRAIL_SMART_CAPABILITIES", "").split()),
            "page_origins": page_origins(),
            "extra": {
                k[len(prefix) :].lower(): v
                for k, v in env.items()
                if k.startswith(prefix) and k != f"{prefix}DATABASE_URL"
            },
        }
        known = {f.name for f in fields(cls)}
        extra = dict(values["extra"])
        for key, value in overrides.items():
            if key in known:
                values[key] = value
            else:
                extra[key] = value
        values["extra"] = extra
        return cls(**values)

    def refuse_weak_secrets(self) -> None:
        """A token signed with a published or short HS256 secret proves nothing: every web and
        worker process refuses to start with one (a JWKS URL means tokens are verified with
        the identity provider's keys instead)."""
        if self.jwks_url:
            return
        refuse_public_secret("CARETRAIL_JWT_SECRET", self.jwt_secret, LOCAL_JWT_SECRET)
        if len(self.jwt_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise PublicSecret(
                f"CARETRAIL_JWT_SECRET is shorter than {MIN_HS256_SECRET_BYTES} bytes: "
                "anyone could guess it"
            )

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced."""
        return replace(self, **overrides)
