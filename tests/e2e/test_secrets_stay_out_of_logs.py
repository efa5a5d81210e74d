"""Tokens and keys never reach a log, whatever a client sends (every process real)."""

from __future__ import annotations

import uuid

import jwt
import requests

from services.records.sealing import DEVELOPMENT_MASTER_KEY
from shared.auth import mint_token
from shared.config import LOCAL_JWT_SECRET, Settings
from shared.fact_signing import keys_dir

SETTINGS = Settings.from_env("e2e")


def test_no_token_secret_or_key_appears_in_any_process_log(system, urls):
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    valid = mint_token(SETTINGS, role="practitioner", sub="dr-logs", org="org-l")
    expired = mint_token(SETTINGS, role="patient", sub="p", patient=patient, ttl_seconds=-60)
    forged = jwt.encode({"sub": "x", "role": "admin"}, "another-secret-of-32-bytes-or-more")
    garbage = "eyJhbGciOiJub25lIn0.not-a-token." + uuid.uuid4().hex
    sent = (valid, expired, forged, garbage)
    for token in sent:
        for service, path in (
            ("records", f"/patients/{patient}/records"),
            ("consent", f"/patients/{patient}/consents"),
            ("audit", f"/audit/patients/{patient}/disclosures"),
            ("notify", f"/patients/{patient}/notifications"),
        ):
            requests.get(urls[service] + path, headers={"Authorization": f"Bearer {token}"})
            requests.post(
                urls[service] + path, headers={"Authorization": f"Bearer {token}"}, data=b"{"
            )

    private_keys = [p.read_text() for p in keys_dir().glob("*.pem") if ".pub." not in p.name]
    key_bodies = [pem.splitlines()[1] for pem in private_keys]
    logs = {p.name: p.read_text(errors="replace") for p in system.home.glob("*.log")}
    assert logs, "the processes' logs were not found"
    for name, text in logs.items():
        for token in sent:
            assert token not in text and token.split(".")[-1] not in text, name
        assert LOCAL_JWT_SECRET not in text and DEVELOPMENT_MASTER_KEY not in text, name
        assert not any(body in text for body in key_bodies), name
