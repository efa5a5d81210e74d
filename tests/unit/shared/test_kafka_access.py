"""A process finds its Kafka password in its environment or, failing that, in the credentials
directory (docker compose cannot read a file into a variable); the environment wins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared.kafka_access import CREDENTIALS_DIR, SECRETS_FILE, act_as, client_options

VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    CREDENTIALS_DIR,
    "CARETRAIL_RECORDS_KAFKA_PASSWORD",
    "CARETRAIL_CONSENT_KAFKA_PASSWORD",
)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Kafka identity but what the test gives, and after it the one before (`act_as` sets
    variables itself: set first, each is restored even when it was absent)."""
    for name in VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    return monkeypatch


@pytest.fixture
def credentials_dir(tmp_path: Path, environment: pytest.MonkeyPatch) -> Path:
    (tmp_path / SECRETS_FILE).write_text(
        json.dumps({"admin": "admin-from-file", "records": "records-from-file"})
    )
    environment.setenv(CREDENTIALS_DIR, str(tmp_path))
    return tmp_path


def test_a_service_takes_its_password_from_the_credentials_dir(credentials_dir):
    act_as("records")

    options = client_options()
    assert options["sasl_plain_username"] == "records"
    assert options["sasl_plain_password"] == "records-from-file"


def test_a_services_password_variable_wins_over_the_file(credentials_dir, environment):
    environment.setenv("CARETRAIL_RECORDS_KAFKA_PASSWORD", "records-from-env")

    act_as("records")

    assert client_options()["sasl_plain_password"] == "records-from-env"


def test_the_named_user_takes_its_password_from_the_credentials_dir(credentials_dir, environment):
    environment.setenv("KAFKA_SASL_USERNAME", "admin")

    assert client_options()["sasl_plain_password"] == "admin-from-file"


def test_the_password_variable_wins_over_the_file_for_the_named_user(credentials_dir, environment):
    environment.setenv("KAFKA_SASL_USERNAME", "admin")
    environment.setenv("KAFKA_SASL_PASSWORD", "admin-from-env")

    assert client_options()["sasl_plain_password"] == "admin-from-env"


def test_a_principal_the_file_does_not_name_gets_no_password(credentials_dir, environment):
    environment.setenv("KAFKA_SASL_USERNAME", "stranger")
    act_as("consent")  # not in the file: the process stays who it was

    assert os.environ["KAFKA_SASL_USERNAME"] == "stranger"
    assert client_options()["sasl_plain_password"] == ""


def test_a_credentials_dir_without_its_secrets_is_an_error(tmp_path, environment):
    environment.setenv(CREDENTIALS_DIR, str(tmp_path / "missing"))

    with pytest.raises(FileNotFoundError):
        act_as("records")


def test_a_plaintext_client_reads_no_credentials(tmp_path, environment):
    environment.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    environment.setenv(CREDENTIALS_DIR, str(tmp_path / "missing"))

    assert client_options() == {}
