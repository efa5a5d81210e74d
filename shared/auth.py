"""Bearer JWTs: verification, the principal they name, SMART App Launch v2 scopes.

HS256 with a shared secret locally; RS256 with keys from a JWKS URL in production. PyJWT is
always given the one allowed algorithm, so `alg: none` and algorithm-confusion tokens fail.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import jwt

from shared.config import Settings
from shared.errors import NotAuthenticated, PermissionDenied

ROLES = ("patient", "practitioner", "compliance", "admin")
DEFAULT_SCOPES = {
    "patient": "patient/*.cruds",
    "practitioner": "user/*.cruds",
    "compliance": "user/AuditEvent.rs",
    "admin": "system/*.cruds",
}
_SCOPE = re.compile(
    r"^(patient|user|system)/(\*|[A-Za-z]+)\.(?:([cruds]+)|(read|write|\*))(?:\?([^\s?]+))?$"
)
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class Scope:
    """One SMART v2 scope, e.g. `user/Observation.rs` (v1 `.read`/`.write` are accepted).

    A granular scope restricts itself to resources matching search criteria, e.g.
    `patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`
    (SMART App Launch v2, "Finer-grained resource constraints using search parameters").
    """

    context: str
    resource: str
    permissions: frozenset[str]
    restriction: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        match = _SCOPE.match(text)
        if not match:
            return None  # openid, launch, fhirUser…: not about resources
        context, resource, v2, v1, query = match.groups()
        letters = v2 if v2 else _V1_PERMISSIONS[v1]
        restriction = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
        if query and not restriction:
            return None  # a restriction we cannot read grants nothing
        return cls(context, resource, frozenset(letters), restriction)

    def allows(self, resource: str, permission: str) -> bool:
        """Whether the scope grants `permission` on some resources of the type (on all of them
        only if it has no restriction)."""
        return (self.resource in ("*", resource)) and permission in self.permissions


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    sub: str
    role: str
    scopes: tuple[Scope, ...] = ()
    patient: str | None = None
    org: str | None = None

    @property
    def actor(self) -> str:
        """`<role>:<sub>`, the `actor` of the events this principal causes."""
        return f"{self.role}:{self.sub}"

    def may(self, resource: str, permission: str) -> bool:
        """Whether a scope grants `permission` (one of c, r, u, d, s) on every `resource`.

        A restricted scope counts only where its caller checks the restriction against the
        resource (records does, see `services.records.domain.scope_terms`)."""
        return any(s.allows(resource, permission) and not s.restriction for s in self.scopes)

    def require_scope(self, resource: str, permission: str) -> None:
        if not self.may(resource, permission):
            raise PermissionDenied(f"the token's scopes do not allow '{permission}' on {resource}")

    def is_patient(self, patient_id: str) -> bool:
        return self.role == "patient" and self.patient == patient_id


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        if settings.jwks_url:
            self._jwks: jwt.PyJWKClient | None = jwt.PyJWKClient(settings.jwks_url)
            self._key: Any = None
            self._algorithm = "RS256"
        else:
            self._jwks = None
            self._key = settings.jwt_secret
            self._algorithm = "HS256"
        # An app sends the same token with every request: checking its signature once is
        # enough, its expiry is checked on every use. Refusals are not cached.
        self._verified = lru_cache(maxsize=4096)(self._verify_signature)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; `NotAuthenticated` for anything else."""
        principal, expires_at = self._verified(token)
        if expires_at <= time.time():
            raise NotAuthenticated("the token has expired")
        return principal

    def _verify_signature(self, token: str) -> tuple[Principal, float]:
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the token has expired") from None
        except (jwt.PyJWTError, ValueError) as err:
            raise NotAuthenticated(f"invalid token: {type(err).__name__}") from None
        return principal_from_claims(claims), float(claims["exp"])

    def verify_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise NotAuthenticated("a bearer token is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("a bearer token is required")
        return self.verify(token.strip())


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise NotAuthenticated("the token names no known role")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise NotAuthenticated("the token names no subject")
    patient = claims.get("patient")
    if role == "patient" and not isinstance(patient, str):
        raise NotAuthenticated("a patient token must name its patient")
    org = claims.get("org")
    if role == "practitioner" and not isinstance(org, str):
        raise NotAuthenticated("a practitioner token must name its organization")
    raw_scope = claims.get("scope", "")
    scopes = tuple(s for s in (Scope.parse(t) for t in str(raw_scope).split()) if s is not None)
    return Principal(sub=sub, role=role, scopes=scopes, patient=patient, org=org)


def mint_token(
    settings: Settings,
    *,
    role: str,
    sub: str,
    org: str | None = None,
    patient: str | None = None,
    scope: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """A local HS256 token (development, demo and tests)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "patient" and patient is None:
        patient = sub
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "scope": scope if scope is not None else DEFAULT_SCOPES[role],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if org:
        claims["org"] = org
    if patient:
        claims["patient"] = patient
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
