"""Signed checkpoints: Ed25519 signatures over the set of chain heads at a moment.

A chain alone proves its entries hang together; a signed head also proves nobody rewrote the
chain from some entry on and recomputed every hash after it, since that needs the private key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit.domain import ChainHead
from shared import fact_signing
from shared.config import Settings, is_local_mode

ALGORITHM = "Ed25519"
DEFAULT_KEY_FILE = Path("var/audit/signing-key.pem")


@dataclass(frozen=True)
class Checkpoint:
    created_at: str
    heads: tuple[ChainHead, ...]
    signature: str  # base64 of the 64-byte Ed25519 signature

    def payload(self) -> bytes:
        return signed_payload(self.created_at, self.heads)


@dataclass(frozen=True)
class Verification:
    """A scheduled verification of every chain, signed so that a result written by anyone
    without the key (a row put in the database) is seen as such."""

    verified_at: str
    ok: bool
    chains: int
    entries: int
    problems: tuple[str, ...]  # one line per broken chain
    signature: str = ""

    def payload(self) -> bytes:
        return rfc8785.dumps(
            {
                "verified_at": self.verified_at,
                "ok": self.ok,
                "chains": self.chains,
                "entries": self.entries,
                "problems": list(self.problems),
            }
        )


def signed_payload(created_at: str, heads: tuple[ChainHead, ...]) -> bytes:
    """What a checkpoint's signature covers: RFC 8785 JSON of its time and heads."""
    return rfc8785.dumps({"created_at": created_at, "heads": [h.as_dict() for h in heads]})


def sign(key: Ed25519PrivateKey, created_at: str, heads: tuple[ChainHead, ...]) -> Checkpoint:
    return Checkpoint(created_at, heads, signature_of(key, signed_payload(created_at, heads)))


def is_signed_by(public_key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    return signature_verifies(public_key, checkpoint.signature, checkpoint.payload())


def signature_of(key: Ed25519PrivateKey, payload: bytes) -> str:
    """The base64 Ed25519 signature of `payload`, as the trail keeps its signatures."""
    return base64.b64encode(key.sign(payload)).decode()


def signature_verifies(public_key: Ed25519PublicKey, signature: str, payload: bytes) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, payload)
    except (InvalidSignature, ValueError, TypeError):
        return False
    # base64 ignores the spare bits of its last character: only one spelling is accepted.
    return base64.b64encode(raw).decode() == signature


def public_pem(key: Ed25519PrivateKey) -> str:
    return pem_of(key.public_key())


def pem_of(public_key: Ed25519PublicKey) -> str:
    return fact_signing.public_pem(public_key).decode()


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key of `signing_key_file` (CARETRAIL_AUDIT_SIGNING_KEY_FILE, PEM PKCS#8).

    Without that setting, in local mode only, a development key is generated once under
    var/audit/. Elsewhere keys are provisioned (`caretrail keys generate`), never made up here.
    """
    named = settings.extra.get("signing_key_file")
    if not named and not is_local_mode():
        raise ValueError("CARETRAIL_AUDIT_SIGNING_KEY_FILE is not set: provision a key")
    path = Path(named) if named else DEFAULT_KEY_FILE
    if not path.exists() and not named:
        path.parent.mkdir(parents=True, exist_ok=True)
        fact_signing.create_private_key(path)
    try:
        return fact_signing.private_key_at(path)
    except fact_signing.MissingSigningKey as err:
        raise ValueError(str(err)) from None
