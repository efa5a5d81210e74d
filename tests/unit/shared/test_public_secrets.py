"""A deployment cannot run on the secrets published in the repository, nor on a short one."""

from __future__ import annotations

import base64

import pytest

from services.records.sealing import DEVELOPMENT_MASTER_KEY, master_key_from
from shared.config import LOCAL_JWT_SECRET, PublicSecret, Settings

STRONG = "x" * 32


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("CARETRAIL_LOCAL", raising=False)
    for name in ("CARETRAIL_JWT_SECRET", "CARETRAIL_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_local_mode_the_development_jwt_secret_is_refused(deployed):
    with pytest.raises(PublicSecret, match="CARETRAIL_JWT_SECRET is the development value"):
        Settings.from_env("records")
    deployed.setenv("CARETRAIL_JWT_SECRET", LOCAL_JWT_SECRET)
    with pytest.raises(PublicSecret):
        Settings.from_env("records")
    deployed.setenv("CARETRAIL_JWT_SECRET", STRONG)
    assert Settings.from_env("records").jwt_secret == STRONG


def test_a_short_hs256_secret_is_refused_even_locally(monkeypatch):
    monkeypatch.setenv("CARETRAIL_JWT_SECRET", "x" * 31)
    with pytest.raises(PublicSecret, match="shorter than 32 bytes"):
        Settings.from_env("records")


def test_with_an_identity_provider_the_hs256_secret_is_not_used(deployed):
    deployed.setenv("CARETRAIL_JWKS_URL", "https://idp.example/jwks")
    assert Settings.from_env("records").jwks_url == "https://idp.example/jwks"


def test_in_local_mode_the_development_secret_is_allowed(monkeypatch):
    monkeypatch.setenv("CARETRAIL_LOCAL", "1")
    monkeypatch.delenv("CARETRAIL_JWT_SECRET", raising=False)
    assert Settings.from_env("records").jwt_secret == LOCAL_JWT_SECRET


def test_outside_local_mode_the_records_master_key_must_be_a_secret_of_ones_own(deployed):
    with pytest.raises(PublicSecret, match="CARETRAIL_RECORDS_MASTER_KEY is not set"):
        master_key_from({})
    with pytest.raises(PublicSecret, match="development value"):
        master_key_from({"master_key": DEVELOPMENT_MASTER_KEY})
    assert master_key_from({"master_key": base64.b64encode(b"k" * 32).decode()})
