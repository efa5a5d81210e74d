"""The SSRF guard on webhook URLs and the webhook secrets."""

import base64

import pytest

from services.notify.domain import parse_webhook_url, safe_addresses, webhook_secret
from shared.errors import InvalidInput


def check(url: str, addresses: list[str], *, allow_loopback: bool = False) -> list[str]:
    target = parse_webhook_url(url, allow_loopback=allow_loopback)
    return safe_addresses(target, addresses, allow_loopback=allow_loopback)


def test_an_https_url_on_a_public_address_is_accepted():
    assert check("https://hooks.example.com/in", ["93.184.216.34"]) == ["93.184.216.34"]


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "::",
    ],
)
def test_non_public_addresses_are_refused(address):
    with pytest.raises(InvalidInput, match="non-public"):
        check("https://hooks.example.com/in", [address])


def test_a_host_name_resolving_to_a_private_address_among_public_ones_is_refused():
    with pytest.raises(InvalidInput):
        check("https://rebind.example.com/", ["93.184.216.34", "10.0.0.5"])


def test_loopback_is_refused_unless_local_use_is_allowed():
    with pytest.raises(InvalidInput):
        check("https://127.0.0.1:8443/", ["127.0.0.1"])
    with pytest.raises(InvalidInput):
        check("http://127.0.0.1:8080/", ["127.0.0.1"])
    assert check("http://127.0.0.1:8080/", ["127.0.0.1"], allow_loopback=True) == ["127.0.0.1"]
    assert check("http://localhost:8080/", ["::1"], allow_loopback=True) == ["::1"]


def test_plain_http_is_refused_for_anything_but_loopback():
    with pytest.raises(InvalidInput, match="https"):
        check("http://hooks.example.com/", ["93.184.216.34"], allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/", "https:///nohost", "https://user:pw@hooks.example.com/", "x"],
)
def test_urls_that_are_not_plain_https_are_refused(url):
    with pytest.raises(InvalidInput):
        check(url, ["93.184.216.34"])


def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(InvalidInput, match="does not resolve"):
        check("https://nowhere.invalid/", [])


def test_a_secret_is_generated_when_none_is_given():
    secret = webhook_secret(None, b"\x01" * 32)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32


def test_a_given_secret_must_be_a_standard_webhooks_secret():
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert webhook_secret(good, b"") == good
    for bad in ("hunter2", "whsec_!!!", "whsec_" + base64.b64encode(b"k" * 8).decode()):
        with pytest.raises(InvalidInput):
            webhook_secret(bad, b"")
