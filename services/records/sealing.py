"""Crypto-shredding: each patient's clinical content is sealed with the patient's own data key.

Content is encrypted with AES-256-GCM under a per-patient data key; data keys are stored
wrapped (AES-256-GCM) by the service's master key. Destroying a patient's wrapped key makes
every copy of their content unreadable: the database rows and the `record.*` events in Kafka
alike. Codes are never stored in clear: a code filter matches HMAC-SHA-256 digests keyed by
the same data key, which mean nothing once it is gone.
See https://csrc.nist.gov/pubs/sp/800/38/d/final (GCM) and RFC 2104 (HMAC).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import PublicSecret, is_local_mode, refuse_public_secret

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
# Local development only: a fixed key, so a restarted dev process can read its own data.
DEVELOPMENT_MASTER_KEY = base64.b64encode(b"caretrail-records-dev-master-key").decode()


class CannotOpen(Exception):
    """The key is not the one that sealed this content (or the content was altered)."""


@dataclass(frozen=True)
class Sealed:
    """Ciphertext and what is needed, besides the key, to open it."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def to_event_data(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "nonce": base64.b64encode(self.nonce).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> Sealed:
        return cls(
            data["key_id"], base64.b64decode(data["nonce"]), base64.b64decode(data["ciphertext"])
        )

    def to_text(self) -> str:
        """One opaque string (`key id.nonce.ciphertext`, base64url), for a field of a fact
        that others keep but only records opens: a break-glass note."""
        return ".".join((self.key_id, _b64url(self.nonce), _b64url(self.ciphertext)))

    @classmethod
    def from_text(cls, text: str) -> Sealed:
        """The sealed content of `to_text`'s form, or `CannotOpen` for anything else."""
        parts = text.split(".")
        try:
            key_id, nonce, ciphertext = parts
            sealed = cls(key_id, _unb64url(nonce), _unb64url(ciphertext))
        except (ValueError, binascii.Error):
            raise CannotOpen("not a sealed note") from None
        if not key_id or len(sealed.nonce) != NONCE_BYTES or not sealed.ciphertext:
            raise CannotOpen("not a sealed note")
        return sealed


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DataKey:
    """One patient's data key, unwrapped."""

    id: str
    secret: bytes = field(repr=False)

    def seal(self, plaintext: bytes, context: str) -> Sealed:
        """Encrypt `plaintext`, bound to `context` (which record, which version)."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self.secret).encrypt(nonce, plaintext, context.encode())
        return Sealed(self.id, nonce, ciphertext)

    def open(self, sealed: Sealed, context: str) -> bytes:
        try:
            return AESGCM(self.secret).decrypt(sealed.nonce, sealed.ciphertext, context.encode())
        except InvalidTag:
            raise CannotOpen(f"content sealed with key {sealed.key_id} does not open") from None

    def digest(self, code: str) -> str:
        """The keyed digest of a code: equal codes match, and nothing else can be learned."""
        return hmac.new(self.secret, code.encode(), hashlib.sha256).hexdigest()


def record_context(patient: str, record_id: str, version: int) -> str:
    """What a sealed resource is bound to: a ciphertext moved to another record won't open."""
    return f"caretrail/records|{patient}|{record_id}|{version}"


def note_context(patient: str) -> str:
    """What a sealed break-glass note is bound to: its patient (a note is sealed before the
    fact that carries it has an id)."""
    return f"caretrail/records/break-glass-note|{patient}"


class MasterKey:
    """Wraps and unwraps data keys."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(secret)

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            return cls(base64.b64decode(text, validate=True))
        except binascii.Error:
            raise ValueError("the master key must be base64") from None

    def wrap(self, patient: str, key: DataKey) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key.secret, _wrap_context(patient, key.id))

    def unwrap(self, patient: str, key_id: str, wrapped: bytes) -> DataKey:
        nonce, ciphertext = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            secret = self._aead.decrypt(nonce, ciphertext, _wrap_context(patient, key_id))
        except InvalidTag:
            raise CannotOpen(f"data key {key_id} does not unwrap with this master key") from None
        return DataKey(key_id, secret)


def _wrap_context(patient: str, key_id: str) -> bytes:
    return f"caretrail/records/data-key|{patient}|{key_id}".encode()


def master_key_from(extra: dict[str, str]) -> MasterKey:
    """The master key of the settings (`CARETRAIL_RECORDS_MASTER_KEY`); the development one
    only in local mode, since it is published with the code."""
    configured = extra.get("master_key")
    if not configured:
        if not is_local_mode():
            raise PublicSecret("CARETRAIL_RECORDS_MASTER_KEY is not set")
        log.warning(
            "CARETRAIL_RECORDS_MASTER_KEY is not set: using the local development master key"
        )
        configured = DEVELOPMENT_MASTER_KEY
    refuse_public_secret("CARETRAIL_RECORDS_MASTER_KEY", configured, DEVELOPMENT_MASTER_KEY)
    return MasterKey.from_base64(configured)


class KeyRing:
    """Data keys: new ones, and unwrapped ones cached per process.

    The cache is keyed by (patient, key id) and callers look the wrapped key up in the
    database on every request first, so a key destroyed by another process is never used:
    its row is gone before the cache is consulted.
    """

    def __init__(self, master: MasterKey, capacity: int = 4096) -> None:
        self._master = master
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str], DataKey] = OrderedDict()
        self._lock = threading.Lock()

    def new_key(self, patient: str) -> tuple[DataKey, bytes]:
        """A fresh data key for `patient` and its wrapped form, to store."""
        key = DataKey(str(uuid.uuid4()), AESGCM.generate_key(bit_length=KEY_BYTES * 8))
        self._remember(patient, key)
        return key, self._master.wrap(patient, key)

    def unwrap(self, patient: str, key_id: str, wrapped: bytes) -> DataKey:
        with self._lock:
            cached = self._cache.get((patient, key_id))
            if cached is not None:
                self._cache.move_to_end((patient, key_id))
                return cached
        key = self._master.unwrap(patient, key_id, wrapped)
        self._remember(patient, key)
        return key

    def forget(self, patient: str) -> None:
        with self._lock:
            for cached in [k for k in self._cache if k[0] == patient]:
                del self._cache[cached]

    def _remember(self, patient: str, key: DataKey) -> None:
        with self._lock:
            self._cache[(patient, key.id)] = key
            self._cache.move_to_end((patient, key.id))
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
