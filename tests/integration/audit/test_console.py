"""The compliance console in a real headless Chromium, against a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.sync_api import Page, expect

from shared.config import Settings
from tests.support.browser import ARTIFACTS, chromium, serve
from tests.unit.audit.facts import access


@pytest.fixture
def settings(database_url: str, key_file: Path) -> Settings:
    # The page and the API under it need the database only: no broker to start.
    return Settings.from_env(
        "audit",
        database_url=database_url,
        kafka_bootstrap_servers="127.0.0.1:9",
        signing_key_file=str(key_file),
    )


@pytest.fixture
def base_url(app) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture
def page() -> Iterator[Page]:
    for browser in chromium():
        yield browser.new_page(viewport={"width": 1400, "height": 1100})


# One database is enough here: the API under the page is tested on both elsewhere.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_compliance_staff_search_the_trail_and_review_break_glass_in_the_console(
    base_url, page, seed, token
):
    patient, other = f"p-{uuid4()}", f"p-{uuid4()}"
    facts = seed(
        access(patient, actor="practitioner:dr-lee", org="org-a", record_ids=("obs-1",)),
        access(patient, actor="practitioner:dr-x", org="org-b", outcome="deny"),
        access(
            patient,
            actor="practitioner:dr-er",
            org="org-er",
            purpose="ETREAT",
            break_glass_reason="OVRER",
            break_glass_note="key-1.bm9uY2U.c2VhbGVkIG5vdGU",
        ),
        access(other, actor="practitioner:dr-lee", org="org-a"),
    )
    emergency = facts[2]
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{base_url}/audit/console")
    page.fill("#token", token("compliance", "officer-1"))
    page.click("#save-token")
    expect(page.locator("#who")).to_have_text("compliance:officer-1")

    page.fill("#search-patient", patient)
    page.click("#search-button")
    rows = page.locator("#results tbody tr[data-entry-id]")
    expect(rows).to_have_count(3)
    shown = {rows.nth(n).get_attribute("data-entry-id") for n in range(3)}
    assert shown == {f.id for f in facts[:3]}
    expect(page.locator("#results")).to_contain_text("deny")
    # The trail says a sealed note exists; the patient's accounting below does not carry it.
    expect(page.locator("#results")).to_contain_text("sealed note (open in records)")

    page.fill("#disclosures-patient", patient)
    page.click("#disclosures-button")
    expect(page.locator("#disclosures-table tbody tr[data-entry-id]")).to_have_count(3)
    expect(page.locator("#disclosures-table")).to_contain_text(
        "break-glass: Emergency treatment of a patient who cannot consent"
    )
    expect(page.locator("#disclosures-table")).not_to_contain_text("sealed note")

    page.click("#bg-load")
    queued = page.locator(f'#bg-table tr[data-entry-id="{emergency.id}"]')
    queued.locator("select.decision").select_option("unjustified")
    queued.locator("input.note").fill("no emergency on record")
    queued.locator("button.review").click()
    expect(queued).to_contain_text("unjustified by compliance:officer-1")

    page.select_option("#bg-filter", "true")
    page.click("#bg-load")
    expect(page.locator(f'#bg-table tr[data-entry-id="{emergency.id}"]')).to_contain_text(
        "unjustified by compliance:officer-1 (no emergency on record)"
    )

    page.click("#verify-button")
    expect(page.locator("#chain-summary")).to_contain_text("All chains verify")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit-console.png"), full_page=True)
    assert problems == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_console_refuses_a_practitioners_token_at_sign_in(base_url, page, token):
    page.goto(f"{base_url}/audit/console")
    page.fill("#token", token("practitioner", "dr-lee", org="org-a"))
    page.click("#save-token")

    expect(page.locator("#login-error")).to_contain_text("for compliance staff")
    expect(page.locator("#login-error")).to_contain_text("practitioner:dr-lee")
    expect(page.locator("#who")).to_have_text("not signed in")
    page.click("#search-button")
    expect(page.locator("#search-error")).to_contain_text("Sign in first")
    expect(page.locator("#results tbody tr[data-entry-id]")).to_have_count(0)
