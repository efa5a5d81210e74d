"""Signed facts: each service signs every event it emits, and consumers take only facts whose
signature verifies for their source.

Without it, anything that can reach the broker could put a `record.accessed` in the trail
and notify a patient of a read that never happened. The signature (Ed25519, in the
`ce_signature` header, base64) covers the RFC 8785 form of the attributes that say what the
fact is and who claims it (`id`, `source`, `type`, `subject`, `time`, `actor`) and the
SHA-256 of the message value, the data's exact bytes. The digest rather than the data goes
into the signed text so that a consumer that keeps only part of the data (the audit trail
keeps no content) can still show, offline, that what it kept came from a signed fact.
`traceparent` and `partitionkey` are not covered: a forged trace id misleads nobody about
what happened, and the partition key is the subject.

Keys: service S signs with the PKCS#8 PEM at `<keys dir>/S.pem` and consumers trust the
public keys at `<keys dir>/*.pub.pem` (the directory is `CARETRAIL_FACT_KEYS_DIR`, default
`var/keys`). In local mode (`caretrail up`, the demo, the tests) a missing key pair is made
once; elsewhere keys are provisioned (`caretrail keys generate`), never made up on start.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import canonical
from shared.config import is_local_mode

SIGNATURE_ATTRIBUTE = "signature"
SOURCE_PREFIX = "caretrail/"
KEYS_DIR_ENV = "CARETRAIL_FACT_KEYS_DIR"
DEFAULT_KEYS_DIR = Path("var/keys")
SERVICES = ("records", "consent", "audit", "notify")
# A service name is also a file name: nothing else may reach the keys directory.
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


class MissingSigningKey(RuntimeError):
    """A service has no provisioned key to sign its facts with (outside local mode)."""


def data_digest(value: bytes) -> str:
    """The hex SHA-256 of a message value: what a signature says of the data."""
    return hashlib.sha256(value).hexdigest()


def signed_text(
    *, id: str, source: str, type: str, subject: str, time: datetime, actor: str, digest: str
) -> bytes:
    """The bytes a fact's signature covers."""
    return canonical.dumps(
        {
            "actor": actor,
            "datadigest": digest,
            "id": id,
            "source": source,
            "subject": subject,
            "time": time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "type": type,
        }
    )


def sign(key: Ed25519PrivateKey, text: bytes) -> str:
    return base64.b64encode(key.sign(text)).decode()


def keys_dir() -> Path:
    return Path(os.environ.get(KEYS_DIR_ENV) or DEFAULT_KEYS_DIR)


@functools.cache
def signing_key(source: str) -> Ed25519PrivateKey:
    """The key that signs the facts of `source` (`caretrail/records` or `records`)."""
    service = source.removeprefix(SOURCE_PREFIX)
    if not _SERVICE_NAME.fullmatch(service):
        raise MissingSigningKey(f"{source!r} names no service that could hold a key")
    path = keys_dir() / f"{service}.pem"
    if not path.exists():
        if not is_local_mode():
            raise MissingSigningKey(
                f"no fact signing key for {service} at {path}: provision one with "
                "`caretrail keys generate` (or run in local mode)"
            )
        generate(service, keys_dir())
    return private_key_at(path)


def generate(service: str, directory: Path) -> Path:
    """Make `service`'s key pair in `directory` unless it has one; return the private key's
    path. The public half is written beside it as `<service>.pub.pem`."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / f"{service}.pem"
    create_private_key(private)
    public = public_pem(private_key_at(private).public_key())
    write_once(directory / f"{service}.pub.pem", public, mode=0o644)
    return private


def create_private_key(path: Path) -> None:
    """Write a new Ed25519 private key (PKCS#8 PEM, readable by its owner only) at `path`,
    unless a key is there already."""
    if path.exists():
        return
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_once(path, pem, mode=0o600)


def private_key_at(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise MissingSigningKey(f"{path} does not hold an Ed25519 private key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_once(path: Path, content: bytes, *, mode: int = 0o600) -> None:
    """Write a key file whole, once: the first writer wins, later ones keep its content."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.chmod(tmp, mode)
    try:
        # A hard link appears whole or not at all: when processes start together, the first
        # key linked wins and nobody reads a half-written file.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


class FactKeys:
    """The public keys trusted for each source, and the test of a fact's signature.

    A source's keys are read from `<service>.pub.pem` in the keys directory when first
    needed, so a service added to a running system is trusted once its key is placed there.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._keys: dict[str, list[Ed25519PublicKey]] = {}

    @classmethod
    def from_directory(cls, directory: Path | None = None) -> FactKeys:
        """The keys in `directory` (`CARETRAIL_FACT_KEYS_DIR` by default); in local mode the
        four services' key pairs are made first if missing."""
        directory = directory or keys_dir()
        if is_local_mode():
            for service in SERVICES:
                generate(service, directory)
        return cls(directory)

    def of(self, source: str) -> list[Ed25519PublicKey]:
        """The keys trusted for `source` (none for a source that names no service)."""
        if source not in self._keys:
            service = source.removeprefix(SOURCE_PREFIX)
            path = self._directory / f"{service}.pub.pem"
            if not source.startswith(SOURCE_PREFIX) or not _SERVICE_NAME.fullmatch(service):
                return []
            if not path.exists():
                return []
            self._keys[source] = [load_public_key(path.read_bytes())]
        return self._keys[source]

    def pems(self, sources: Iterable[str]) -> dict[str, list[str]]:
        """The keys trusted for `sources`, as PEM text (what an export carries)."""
        return {s: [public_pem(k).decode() for k in self.of(s)] for s in sorted(set(sources))}

    def problem(self, *, signature: str | None, source: str, text: bytes) -> str | None:
        """Why a fact is not authentic (`None` when it is); no content, only what failed."""
        return problem_with(self.of(source), signature=signature, source=source, text=text)


def problem_with(
    keys: Sequence[Ed25519PublicKey], *, signature: str | None, source: str, text: bytes
) -> str | None:
    """Why `signature` over `text` is not that of one of `keys` (`None` when it is)."""
    if not keys:
        return f"no key is trusted for source {source!r}"
    if not signature:
        return "the fact is not signed"
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return "the signature is not base64"
    if base64.b64encode(raw).decode() != signature:
        return "the signature is not in its one base64 spelling"
    for key in keys:
        try:
            key.verify(raw, text)
            return None
        except InvalidSignature:
            continue
    return f"the signature does not verify for source {source!r}"


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """The Ed25519 public key of a PEM text; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except UnsupportedAlgorithm as err:
        raise ValueError(str(err)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key
