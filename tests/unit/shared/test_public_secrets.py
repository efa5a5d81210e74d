"""A deployment cannot run on the secrets published in the repository, nor on a short one:
every web app (`create_service_app`) and worker (`run_worker_process`) checks its settings
with `refuse_weak_secrets` before anything else."""

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


def starting(service: str = "consent") -> Settings:
    """Settings as a process starting outside the tests reads them, checked as it checks them."""
    settings = Settings.from_env(service, database_url="sqlite://")
    settings.refuse_weak_secrets()
    return settings


def test_outside_local_mode_the_development_jwt_secret_is_refused(deployed):
    with pytest.raises(PublicSecret, match="CARETRAIL_JWT_SECRET is the development value"):
        starting()
    deployed.setenv("CARETRAIL_JWT_SECRET", LOCAL_JWT_SECRET)
    with pytest.raises(PublicSecret):
        starting()
    deployed.setenv("CARETRAIL_JWT_SECRET", STRONG)
    assert starting().jwt_secret == STRONG


def test_a_web_app_refuses_to_start_on_the_development_secret(deployed):
    from services.consent.app import create_app

    with pytest.raises(PublicSecret):
        create_app(Settings.from_env("consent", database_url="sqlite://"))


def test_a_short_hs256_secret_is_refused_even_locally(monkeypatch):
    monkeypatch.setenv("CARETRAIL_JWT_SECRET", "x" * 31)
    with pytest.raises(PublicSecret, match="shorter than 32 bytes"):
        starting()


def test_with_an_identity_provider_the_hs256_secret_is_not_used(deployed):
    deployed.setenv("CARETRAIL_JWKS_URL", "https://idp.example/jwks")
    assert starting().jwks_url == "https://idp.example/jwks"


def test_in_local_mode_the_development_secret_is_allowed(monkeypatch):
    monkeypatch.setenv("CARETRAIL_LOCAL", "1")
    monkeypatch.delenv("CARETRAIL_JWT_SECRET", raising=False)
    assert starting().jwt_secret == LOCAL_JWT_SECRET


def test_outside_local_mode_the_records_master_key_must_be_a_secret_of_ones_own(deployed):
    with pytest.raises(PublicSecret, match="CARETRAIL_RECORDS_MASTER_KEY is not set"):
        master_key_from({})
    with pytest.raises(PublicSecret, match="development value"):
        master_key_from({"master_key": DEVELOPMENT_MASTER_KEY})
    assert master_key_from({"master_key": base64.b64encode(b"k" * 32).decode()})
