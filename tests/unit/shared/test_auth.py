"""Tokens verified against a JWKS (RS256), as in production, and SMART v2 scopes."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.auth import Scope, TokenVerifier, mint_token
from shared.config import Settings
from shared.errors import NotAuthenticated


@pytest.fixture(scope="module")
def jwks():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def claims(**extra):
    now = int(time.time())
    return {
        "sub": "dr-lee",
        "role": "practitioner",
        "org": "org-a",
        "scope": "user/*.rs",
        "iss": "caretrail-local",
        "aud": "caretrail",
        "iat": now,
        "exp": now + 60,
        **extra,
    }


def test_an_rs256_token_from_the_jwks_is_accepted(jwks):
    key, url = jwks
    verifier = TokenVerifier(Settings.from_env("test", database_url="x", jwks_url=url))
    token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "k1"})
    principal = verifier.verify(token)
    assert (principal.sub, principal.org, principal.actor) == (
        "dr-lee",
        "org-a",
        "practitioner:dr-lee",
    )


def test_an_hs256_token_is_refused_when_the_jwks_is_configured(jwks):
    _, url = jwks
    settings = Settings.from_env("test", database_url="x", jwks_url=url)
    hs256 = mint_token(settings, role="practitioner", sub="dr-lee", org="org-a")
    with pytest.raises(NotAuthenticated):
        TokenVerifier(settings).verify(hs256)


def test_a_token_signed_by_another_rsa_key_is_refused(jwks):
    _, url = jwks
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(NotAuthenticated):
        TokenVerifier(Settings.from_env("test", database_url="x", jwks_url=url)).verify(token)


@pytest.mark.parametrize(
    ("text", "resource", "permission", "allowed"),
    [
        ("patient/*.rs", "Observation", "r", True),
        ("patient/*.rs", "Observation", "c", False),
        ("user/Observation.rs", "Observation", "s", True),
        ("user/Observation.rs", "Condition", "r", False),
        ("user/*.cruds", "Condition", "d", True),
        ("patient/Observation.read", "Observation", "r", True),
        ("patient/Observation.read", "Observation", "u", False),
    ],
)
def test_smart_scopes_grant_exactly_their_permissions(text, resource, permission, allowed):
    scope = Scope.parse(text)
    assert scope is not None and scope.allows(resource, permission) is allowed


def test_a_granular_scope_keeps_its_search_restriction():
    scope = Scope.parse(
        "patient/Observation.rs?category="
        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    assert scope is not None and scope.allows("Observation", "r")
    assert scope.restriction == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
    )


def test_a_restricted_scope_does_not_grant_every_resource_of_its_type():
    token = mint_token(
        Settings.from_env("test", database_url="x"),
        role="practitioner",
        sub="dr",
        org="o",
        scope="user/Observation.rs?category=laboratory user/Condition.rs",
    )
    principal = TokenVerifier(Settings.from_env("test", database_url="x")).verify(token)
    assert not principal.may("Observation", "r")
    assert principal.may("Condition", "r")


@pytest.mark.parametrize("text", ["openid", "launch/patient", "fhirUser", "user/Obs.xyz"])
def test_scopes_that_are_not_about_resources_grant_nothing(text):
    assert Scope.parse(text) is None


def test_a_token_verified_once_is_refused_when_it_expires():
    settings = Settings.from_env("test", database_url="x")
    verifier = TokenVerifier(settings)
    token = mint_token(settings, role="patient", sub="alice", ttl_seconds=1)
    assert verifier.verify(token).patient == "alice"
    time.sleep(1.1)
    with pytest.raises(NotAuthenticated, match="expired"):
        verifier.verify(token)
