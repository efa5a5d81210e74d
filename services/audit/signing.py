"""Signed checkpoints: Ed25519 signatures over the set of chain heads at a moment.

A chain alone proves its entries hang together; a signed head also proves nobody rewrote the
chain from some entry on and recomputed every hash after it, since that needs the private key.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit.domain import ChainHead
from shared.config import Settings

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
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """The Ed25519 public key of a PEM text; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except UnsupportedAlgorithm as err:
        raise ValueError(str(err)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key of `signing_key_file` (CARETRAIL_AUDIT_SIGNING_KEY_FILE, PEM PKCS#8).

    Without that setting, a development key is generated once under var/audit/. A named file
    that does not exist is an error: production keys are provisioned, never made up here.
    """
    named = settings.extra.get("signing_key_file")
    path = Path(named) if named else DEFAULT_KEY_FILE
    if not path.exists() and not named:
        _create_key_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        # A hard link appears whole or not at all: when the web and worker processes start
        # together, the first key linked wins and nobody reads a half-written file.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
