"""A compliance officer's day in the console, in a real headless Chromium against a real
HTTP server: sign in, search a date range, read and export a whole accounting of
disclosures, review break-glass accesses knowing whether each was granted, and see that the
trail verified. Each test names the finding of issue 17 it would have caught; screenshots of
the key states go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from services.audit.signing import signing_key
from services.audit.verification import run_verification
from shared.break_glass import BY_CODE
from shared.config import Settings
from shared.db import session_factory
from shared.events import new_event
from tests.support.browser import ARTIFACTS, chromium, serve
from tests.unit.audit.facts import access

SCREENSHOTS = ARTIFACTS / "console"
ZONE = "America/New_York"
SISTER = "patient-unreachable"  # a reason code, shown in words with the code beside them

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(database_url: str, key_file: Path, tmp_path: Path) -> Settings:
    # The page and the API under it need the database only: no broker to start.
    directory = tmp_path / "directory.json"
    directory.write_text(
        json.dumps(
            {
                "actors": {
                    "compliance:cora": "Cora Banks",
                    "practitioner:dr-lee": "Dr Ann Lee",
                    "practitioner:dr-er": "Dr Sam Ortiz",
                },
                "organizations": {"org-a": "Northside Clinic", "org-er": "City Hospital ER"},
            }
        )
    )
    return Settings.from_env(
        "audit",
        database_url=database_url,
        kafka_bootstrap_servers="127.0.0.1:9",
        signing_key_file=str(key_file),
        directory_file=str(directory),
    )


@pytest.fixture
def base_url(app) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Two cores shared with other work: a loaded machine renders hundreds of rows slowly.
    expect.set_options(timeout=20_000)
    yield from chromium()


def open_page(browser: Browser, width: int = 1400, height: int = 1000) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": height},
        timezone_id=ZONE,
        locale="en-US",
        accept_downloads=True,
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    return context.new_page()


def shot(page: Page, name: str, selector: str | None = None) -> None:
    """Keep a screenshot: of `selector` scrolled to the top of the window (as much of it as
    the window shows), or of the whole page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = str(SCREENSHOTS / f"{name}.png")
    if selector is None:
        page.screenshot(path=path, full_page=True)
        return
    page.locator(selector).evaluate("node => node.scrollIntoView({block: 'start'})")
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not on the page"
    shown = page.viewport_size["height"] - box["y"] if page.viewport_size else box["height"]
    clip = {**box, "height": min(box["height"], shown)}
    page.screenshot(path=path, clip=clip)


def sign_in(page: Page, base_url: str, bearer_token: str) -> None:
    page.goto(f"{base_url}/audit/console")
    # Pasted as the whole header value, wrapped across lines, as people do.
    page.fill("#token", f"Bearer {bearer_token[:40]}\n{bearer_token[40:]}\n")
    page.click("#save-token")


def test_a_compliance_officer_reads_a_whole_accounting_reviews_break_glass_and_sees_the_trail_verified(  # noqa: E501
    base_url, browser, seed, token, engine, settings
):
    patient = f"pat-{uuid4()}"
    now = datetime.now(UTC)
    # 520 disclosures: more than the 200 the console used to show, more than a page of 500.
    reads = [
        access(patient, actor="practitioner:dr-lee", org="org-a", time=now - timedelta(minutes=n))
        for n in range(510)
    ]
    refused = [
        access(patient, actor="practitioner:dr-kim", org="org-b", outcome="deny", time=now)
        for _ in range(8)
    ]
    emergency = access(
        patient,
        actor="practitioner:dr-er",
        org="org-er",
        purpose="ETREAT",
        break_glass_reason="OVRER",
        break_glass_note="key-1.bm9uY2U.c2VhbGVkIG5vdGU",
    )
    sister = sister_attempt(patient)
    # More break-glass accesses than the 100 the queue used to show.
    others = [
        access(
            f"pat-{uuid4()}",
            actor="practitioner:dr-er",
            org="org-er",
            purpose="ETREAT",
            break_glass_reason="OVRER",
            time=now - timedelta(hours=1, minutes=n),
        )
        for n in range(101)
    ]
    seed(*reads, *refused, emergency, sister, *others)
    run_verification(session_factory(engine), signing_key(settings))
    page = open_page(browser)
    problems = watch(page)

    # Sign-in: a pasted `Bearer …` works, and the header says who the server says it is.
    sign_in(page, base_url, token("compliance", "cora"))
    expect(page.locator("#who")).to_have_text("Cora Banks · compliance:cora")
    # The last scheduled verification, signed, in local time with the zone named.
    expect(page.locator("#last-verification")).to_contain_text("Last scheduled verification")
    expect(page.locator("#last-verification")).to_contain_text("EST")
    expect(page.locator("#last-verification")).to_contain_text("signed by the audit key")

    # The accounting of disclosures pages through everything and says the total.
    page.fill("#disclosures-patient", patient)
    page.click("#disclosures-button")
    expect(page.locator("#disclosures-total")).to_contain_text(f"All 520 disclosures of {patient}")
    expect(page.locator("#disclosures-table tbody tr[data-entry-id]")).to_have_count(520)
    refusal = page.locator(f'#disclosures-table tr[data-entry-id="{refused[0].id}"]')
    expect(refusal).to_contain_text("refused")
    expect(refusal).to_contain_text("no consent covers it")  # the reason, kept in the trail
    expect(refusal).to_contain_text("EST")
    shot(page, "01-disclosures-complete-with-total", "#disclosures")

    # Exported whole, as CSV and as a FHIR Bundle of AuditEvents.
    with page.expect_download() as csv_download:
        page.click("#disclosures-csv")
    rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
    assert len(rows) == 520
    assert {r["reason"] for r in rows if r["outcome"] == "deny"} == {
        "no consent covers it",
        "only practitioners may break the glass",
    }
    with page.expect_download() as fhir_download:
        page.click("#disclosures-fhir")
    bundle = json.loads(Path(fhir_download.value.path()).read_text())
    assert (bundle["resourceType"], len(bundle["entry"])) == ("Bundle", 520)

    # A printable page: the accounting alone, with who printed it and when.
    page.click("#disclosures-print")
    expect(page.locator("#print-title")).to_have_text(f"Accounting of disclosures: {patient}")
    expect(page.locator("#search")).to_be_hidden()
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 900, "height": 1000})
    expect(page.locator("#print-meta")).to_contain_text("Printed")
    page.screenshot(path=str(SCREENSHOTS / "02-printable-accounting.png"))
    page.emulate_media(media="screen")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.click("#print-back")
    expect(page.locator("#search")).to_be_visible()

    # The break-glass queue: every access, the total, and whether each was granted.
    page.click("#bg-load")
    expect(page.locator("#bg-total")).to_contain_text(
        "103 break-glass accesses (102 permitted, 1 refused)"
    )
    expect(page.locator("#bg-table tbody tr[data-entry-id]")).to_have_count(103)
    attempt = page.locator(f'#bg-table tr[data-entry-id="{sister.id}"]')
    expect(attempt).to_contain_text("refused")
    expect(attempt).to_contain_text("only practitioners may break the glass")
    expect(attempt).to_contain_text(SISTER)
    expect(attempt).to_contain_text(BY_CODE[SISTER].display)
    expect(attempt).to_contain_text("emergency treatment")
    granted = page.locator(f'#bg-table tr[data-entry-id="{emergency.id}"]')
    expect(granted).to_contain_text("permitted")
    expect(granted).to_contain_text(BY_CODE["OVRER"].display)
    expect(granted).to_contain_text("sealed note (open in records)")
    expect(granted).to_contain_text("Dr Sam Ortiz")
    expect(granted).to_contain_text("City Hospital ER")

    # No default decision: a choice and a note are both required.
    record = attempt.locator("button.review")
    expect(attempt.locator("select.decision")).to_have_value("")
    expect(record).to_be_disabled()
    attempt.locator("select.decision").select_option("unjustified")
    expect(record).to_be_disabled()
    attempt.locator("input.note").fill("a relative cannot break the glass; refused correctly")
    expect(record).to_be_enabled()
    shot(page, "03-break-glass-queue-outcome-and-required-decision", "#break-glass")
    record.click()
    # The review time and note show at once, without reloading the queue.
    expect(attempt).to_contain_text(
        "unjustified by compliance:cora (a relative cannot break the glass; refused correctly) on"
    )
    expect(attempt).to_contain_text("EST")

    # Verify: the button is disabled and progress shows while it runs.
    release = hold(page, "**/audit/verify")
    page.click("#verify-button")
    expect(page.locator("#verify-button")).to_be_disabled()
    expect(page.locator("#verify-progress")).to_contain_text("Verifying every chain")
    shot(page, "04-verify-in-progress", "#chains")
    release()
    expect(page.locator("#chain-summary")).to_contain_text("All chains verify")
    expect(page.locator("#verify-button")).to_be_enabled()
    shot(page, "05-verified", "#chains")
    assert problems == []


def test_search_takes_a_date_range_org_and_record_filters_says_the_total_and_charts_refusals(
    base_url, browser, seed, token
):
    patient = f"pat-{uuid4()}"
    march = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    seed(
        *[
            access(patient, actor="practitioner:dr-lee", org="org-a", time=march + timedelta(n))
            for n in range(5)
        ],
        *[
            access(patient, actor="practitioner:dr-kim", org="org-b", outcome="deny", time=march)
            for _ in range(6)
        ],
        access(patient, actor="practitioner:dr-lee", org="org-a", time=march - timedelta(30)),
        access(
            patient,
            actor="practitioner:dr-lee",
            org="org-a",
            record_ids=("rec-special",),
            time=march + timedelta(days=1),
        ),
    )
    page = open_page(browser)
    problems = watch(page)
    sign_in(page, base_url, token("compliance", "cora"))
    expect(page.locator("#who")).to_contain_text("compliance:cora")

    page.fill("#search-patient", patient)
    page.fill("#search-since", "2026-03-01")
    page.fill("#search-until", "2026-03-31")
    page.click("#search-button")
    expect(page.locator("#search-total")).to_contain_text("12 entries match (6 refused)")
    expect(page.locator("#results tbody tr[data-entry-id]")).to_have_count(12)
    # Words with the code beside, local time with its zone, names from the directory.
    first = page.locator("#results tbody tr[data-entry-id]").first
    expect(first).to_contain_text("Record read")
    expect(first).to_contain_text("record.accessed")
    expect(first).to_contain_text("treatment")
    expect(page.locator("#results")).to_contain_text("EDT")  # 10 March 2026 is after the switch
    expect(page.locator("#results")).to_contain_text("Northside Clinic")
    # The chart: a bar per day, refusals in red, the spike labelled; a bar per organization.
    expect(page.locator("#chart-days g.day")).to_have_count(5)
    expect(page.locator("#chart-days text.spike")).to_have_text("▲ 6 refused")
    expect(page.locator("#chart-orgs g.org")).to_have_count(2)
    shot(page, "06-search-date-range-total-and-chart", "#search")

    # Sortable columns: by who, ascending.
    page.click('#results th[data-key="actor"] button')
    expect(page.locator("#results tbody tr").first).to_contain_text("dr-kim")
    expect(page.locator('#results th[data-key="actor"]')).to_have_attribute(
        "aria-sort", "ascending"
    )

    # Organization and record filters.
    page.fill("#search-org", "org-b")
    page.click("#search-button")
    expect(page.locator("#search-total")).to_contain_text("6 entries match (6 refused)")
    page.fill("#search-org", "")
    page.fill("#search-record", "rec-special")
    page.click("#search-button")
    expect(page.locator("#search-total")).to_contain_text("1 entry match")

    # One entry's detail: consent, trace, its place in its chain; a link to the patient's
    # disclosures from it.
    page.locator("#results button.details").first.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-list")).to_contain_text("caretrail.access.v1 partition 0")
    expect(page.locator("#detail-list")).to_contain_text("Previous hash")
    shot(page, "07-entry-detail", "#detail")
    page.locator("#detail-list button.to-disclosures").click()
    # 13: the range of the search does not bound the accounting, six years back.
    expect(page.locator("#disclosures-total")).to_contain_text("All 13 disclosures")
    assert problems == []


def test_an_error_shows_next_to_what_failed_and_leaves_no_stale_rows(
    base_url, browser, seed, token
):
    first, second = f"pat-{uuid4()}", f"pat-{uuid4()}"
    seed(*[access(first, actor="practitioner:dr-lee", org="org-a") for _ in range(60)])
    page = open_page(browser, height=700)
    sign_in(page, base_url, token("compliance", "cora"))
    expect(page.locator("#who")).to_contain_text("compliance:cora")
    page.fill("#search-patient", first)
    page.click("#search-button")
    expect(page.locator("#results tbody tr[data-entry-id]")).to_have_count(50)

    # Scrolled down to More, the next page fails: the error is where the officer is looking.
    next_page = lambda url: "cursor=" in url  # noqa: E731
    page.route(next_page, lambda route: route.abort())
    page.click("#search-more")
    expect(page.locator("#search-more-error")).to_be_in_viewport()
    expect(page.locator("#search-more-error")).to_contain_text("Failed to fetch")
    page.unroute(next_page)

    # A failed search for another patient leaves none of the first patient's rows behind.
    page.fill("#search-patient", second)
    page.fill("#search-record", "r" * 201)  # longer than the API takes: a 422
    page.click("#search-button")
    expect(page.locator("#search-error")).to_contain_text("Unprocessable")
    expect(page.locator("#search-error")).to_contain_text("record: ")  # which field, and why
    expect(page.locator("#search-error")).to_be_in_viewport()
    expect(page.locator("#results tbody tr[data-entry-id]")).to_have_count(0)
    expect(page.locator("#search-total")).to_have_text("")
    shot(page, "08-error-next-to-the-search-no-stale-rows", "#search")


def test_sign_in_strips_bearer_refuses_garbage_and_non_compliance_tokens(base_url, browser, token):
    page = open_page(browser)
    page.goto(f"{base_url}/audit/console")

    page.fill("#token", "hello there")
    page.click("#save-token")
    expect(page.locator("#login-error")).to_contain_text("This is not a token")
    expect(page.locator("#who")).to_have_text("not signed in")

    forged = token("compliance", "cora")[:-4] + "AAAA"
    page.fill("#token", f"Bearer {forged}")
    page.click("#save-token")
    expect(page.locator("#login-error")).to_contain_text("The server refused this token")
    expect(page.locator("#who")).to_have_text("not signed in")

    patient = f"pat-{uuid4()}"
    page.fill("#token", f"Bearer {token('patient', patient, patient=patient)}")
    page.click("#save-token")
    expect(page.locator("#login-error")).to_contain_text(
        f"This console is for compliance staff. The server verified this token as patient:{patient}"
    )
    expect(page.locator("#who")).to_have_text("not signed in")
    shot(page, "09-sign-in-refuses-a-patient-token", "#login")


def test_the_console_works_on_a_390_px_phone_and_copies_a_full_id_from_a_short_one(
    base_url, browser, seed, token
):
    patient = f"pat-{uuid4()}"
    seed(
        access(patient, actor="practitioner:dr-lee", org="org-a", record_ids=(str(uuid4()),)),
        access(patient, actor="practitioner:dr-kim", org="org-b", outcome="deny"),
    )
    page = open_page(browser, width=390, height=844)
    sign_in(page, base_url, token("compliance", "cora"))
    expect(page.locator("#who")).to_contain_text("compliance:cora")
    page.fill("#search-patient", patient)
    page.click("#search-button")
    expect(page.locator("#results tbody tr[data-entry-id]")).to_have_count(2)

    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    expect(page.locator("#results thead")).to_be_hidden()  # rows are cards, cells labelled
    short = page.locator("#results tbody tr").first.locator('td[data-label="Patient"] button.id')
    expect(short).to_have_text(f"{patient[:12]}…")
    short.click()
    assert page.evaluate("navigator.clipboard.readText()") == patient
    shot(page, "10-phone-390px")


def sister_attempt(patient: str):
    """A patient (not this one) who tried to break the glass: records refused it."""
    return new_event(
        "access.denied",
        source_service="records",
        subject=patient,
        actor="patient:sis",
        data={
            "patient": patient,
            "actor": "patient:sis",
            "role": "patient",
            "org": None,
            "action": "search",
            "record_ids": [],
            "categories": [],
            "purpose": "ETREAT",
            "consent_ids": [],
            "break_glass_reason": SISTER,
            "outcome": "deny",
            "reason": "only practitioners may break the glass",
        },
    )


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    return problems


def hold(page: Page, pattern: str):
    """Hold requests to `pattern` until the returned function is called."""
    held: list[Route] = []
    page.route(pattern, lambda route: held.append(route))

    def release() -> None:
        while not held:  # the request may not have reached the route yet
            page.wait_for_timeout(50)
        for route in held:
            route.continue_()
        page.unroute(pattern)

    return release
