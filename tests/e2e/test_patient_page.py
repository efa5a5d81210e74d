"""The patient page in a real headless Chromium, against every process of the system."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    expect,
)

from caretrail.demo import observation
from caretrail.people import Person
from shared.config import Settings
from tests.support.browser import ARTIFACTS, chromium

SETTINGS = Settings.from_env("e2e")
PHONE = {"width": 390, "height": 844}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE)  # a fresh tab storage for each test
    try:
        yield context.new_page()
    finally:
        context.close()


def bearer(person: Person) -> dict[str, str]:
    return {"Authorization": f"Bearer {person.token(SETTINGS)}"}


def snap(page: Page, step: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"patient-page-{step}.png"), full_page=True)


def until_shown(page: Page, refresh: str, item: Locator, timeout_seconds: float = 30.0) -> None:
    """Press the section's refresh button until `item` is there: facts arrive through Kafka."""
    deadline = time.monotonic() + timeout_seconds
    while item.count() == 0:
        if time.monotonic() > deadline:
            snap(page, "timed-out")
            raise AssertionError(f"{item} not shown in {timeout_seconds}s")
        page.click(refresh)
        page.wait_for_timeout(300)


def until(what: str, probe: Callable[[], bool], timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not probe():
        assert time.monotonic() < deadline, f"{what} not seen in {timeout_seconds}s"
        time.sleep(0.2)


def test_a_patient_shares_sees_who_read_adds_a_symptom_and_stops_sharing(urls, page):
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    alice = Person("p", "Alice", "patient", "alice", patient=patient)
    dr_lee = Person("a", "Dr Lee", "practitioner", "dr-lee", org="org-a")
    dr_kim = Person("b", "Dr Kim", "practitioner", "dr-kim", org="org-b")
    dr_er = Person("e", "Dr Er", "practitioner", "dr-er", org="org-er")
    written = requests.post(
        f"{urls['records']}/patients/{patient}/records",
        headers=bearer(dr_lee),
        json=observation("4548-4", "Hemoglobin A1c", value=6.1, unit="%"),
        timeout=10,
    )
    assert written.status_code == 201
    record = written.json()["id"]
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

    # 1. Alice signs in with the token as her provider gave it, "Bearer" and all
    page.goto(f"{urls['records']}/patient")
    page.fill("#token", f"Bearer {alice.token(SETTINGS)}")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("Signed in as alice")
    lab = page.locator(f'#chart-list li[data-record-id="{record}"]')
    expect(lab).to_contain_text("Hemoglobin A1c")
    expect(lab).to_contain_text("from your provider (EHR)")
    expect(lab).to_contain_text("written by dr-lee (org-a)")
    snap(page, "1-signed-in")

    # 2. She lets Dr Kim see her test results, to treat her, with the form in plain words
    page.select_option("#grantee-type", "practitioner")
    page.fill("#grantee-id", "dr-kim")
    page.check("#grant-categories input[value=Observation]")
    page.select_option("#grant-purpose", "TREAT")
    expect(page.locator("#grant-summary")).to_contain_text(
        "dr-kim will be able to see your test result or measurement, to treat you"
    )
    page.click("#grant-button")
    shared = page.locator("#consent-list li", has_text="dr-kim")
    expect(shared).to_contain_text("Ends")
    expect(shared).to_contain_text("active")
    snap(page, "2-granted")

    # 3. Dr Kim reads the result under that consent, once records has heard of it
    def kim_reads() -> bool:
        answer = requests.get(
            f"{urls['records']}/patients/{patient}/records/{record}",
            headers=bearer(dr_kim),
            timeout=10,
        )
        return answer.status_code == 200

    until("Dr Kim's read under the consent", kim_reads)
    # ... and later an emergency doctor opens it without her consent ("break the glass")
    emergency = requests.get(
        f"{urls['records']}/patients/{patient}/records/{record}",
        headers={
            **bearer(dr_er),
            "X-Break-Glass-Reason": "OVRER",
            "X-Break-Glass-Note": "unconscious on arrival",
        },
        timeout=10,
    )
    assert emergency.status_code == 200

    # 4. The page shows who read it, newest first, the emergency flagged, and the notification
    read = page.locator("#disclosure-list li", has_text="dr-kim (org-b) opened your")
    flagged = page.locator("#disclosure-list li.break-glass", has_text="dr-er (org-er)")
    until_shown(page, "#disclosures-refresh", flagged)
    until_shown(page, "#disclosures-refresh", read)
    expect(read.first).to_contain_text("under your consent")
    expect(page.locator("#disclosure-list li").first).to_contain_text("Emergency access")
    expect(flagged).to_contain_text(
        "reason given: Emergency treatment of a patient who cannot consent"
    )
    expect(flagged).not_to_contain_text("unconscious on arrival")  # the note stays sealed
    told = page.locator("#notification-list li.unread", has_text="Your records were read")
    until_shown(page, "#notifications-refresh", told)
    urgent = page.locator("#notification-list li.urgent", has_text="Emergency access to your")
    until_shown(page, "#notifications-refresh", urgent)
    expect(urgent).to_contain_text("urgent")
    snap(page, "3-who-read")
    told.first.get_by_role("button", name="Mark as read").click()
    expect(page.locator("#notification-list li.unread", has_text="were read")).to_have_count(0)
    snap(page, "4-notification-read")

    # 5. She records a headache, 6 out of 10, and sees it in her chart as hers
    page.select_option("#add-kind", "symptom")
    page.select_option("#symptom-code", label="Headache")
    page.fill("#symptom-severity", "6")
    page.click("#add-button")
    headache = page.locator("#chart-list li", has_text="Symptom: Headache")
    expect(headache).to_contain_text("6 out of 10")
    expect(headache).to_contain_text("added by you (PHR)")
    snap(page, "5-symptom-added")

    # 6. She stops sharing with Dr Kim
    shared.get_by_role("button", name="Stop sharing").click()
    expect(shared).to_contain_text("revoked")
    expect(shared.get_by_role("button", name="Stop sharing")).to_have_count(0)
    snap(page, "6-revoked")

    # Readable on a phone: nothing wider than the screen
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    assert problems == []


def test_a_token_that_is_not_a_patients_is_refused_with_a_reason_by_keyboard_too(urls, page):
    dr_lee = Person("a", "Dr Lee", "practitioner", "dr-lee", org="org-a")
    page.goto(f"{urls['records']}/patient")
    page.fill("#token", dr_lee.token(SETTINGS))
    page.keyboard.press("Tab")  # from the token to the button, by keyboard alone
    page.keyboard.press("Enter")

    expect(page.locator("#status")).to_contain_text("not a patient's")
    expect(page.locator("#main")).to_be_hidden()


def test_a_patient_adds_a_medicine_an_allergy_and_a_vaccination_to_her_chart(urls, page):
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    bob = Person("p", "Bob", "patient", "bob", patient=patient)
    page.goto(f"{urls['records']}/patient")
    page.fill("#token", bob.token(SETTINGS))
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#chart-list")).to_contain_text("Your chart is empty.")

    page.select_option("#add-kind", "medication")
    page.fill("#medication-name", "Metformin 500 mg")
    page.fill("#medication-dose", "one tablet with breakfast")
    page.click("#add-button")
    expect(page.locator("#chart-list li", has_text="Medicine: Metformin 500 mg")).to_contain_text(
        "one tablet with breakfast"
    )

    page.select_option("#add-kind", "allergy")
    page.fill("#allergy-substance", "Penicillin")
    page.fill("#allergy-reaction", "rash")
    page.click("#add-button")
    expect(page.locator("#chart-list li", has_text="Allergy: Penicillin")).to_contain_text("rash")

    page.select_option("#add-kind", "immunization")
    page.select_option("#immunization-code", label="Another vaccine")
    page.fill("#immunization-vaccine", "Yellow fever vaccine")
    page.click("#add-button")
    expect(page.locator("#status")).to_contain_text("Please fill in the date you had it")
    page.fill("#immunization-date", "2026-10-01")
    page.click("#add-button")
    expect(page.locator("#chart-list li", has_text="Vaccination: Yellow fever")).to_be_visible()

    entries = page.locator("#chart-list li[data-record-id]")
    expect(entries).to_have_count(3)
    expect(page.locator("#chart-list li", has_text="added by you (PHR)")).to_have_count(3)
    snap(page, "7-medicine-allergy-vaccination")


def blood_pressure(systolic: int, diastolic: int, days_ago: int) -> dict[str, object]:
    def part(code: str, name: str, value: int) -> dict[str, object]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
        "effectiveDateTime": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "component": [
            part("8480-6", "Systolic blood pressure", systolic),
            part("8462-4", "Diastolic blood pressure", diastolic),
        ],
    }


def test_a_patient_sees_her_reminders_and_trends_and_snoozes_and_dismisses(urls, page):
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    carol = Person("p", "Carol", "patient", "carol", patient=patient)
    dr_lee = Person("a", "Dr Lee", "practitioner", "dr-lee", org="org-a")
    born = {"resourceType": "Patient", "birthDate": "1970-05-01", "gender": "female"}
    for who, resource in [(carol, born)] + [
        (dr_lee, blood_pressure(s, d, days)) for s, d, days in [(150, 95, 400), (138, 88, 200)]
    ]:
        written = requests.post(
            f"{urls['records']}/patients/{patient}/records",
            headers=bearer(who),
            json=resource,
            timeout=10,
        )
        assert written.status_code == 201, written.text
    page.goto(f"{urls['records']}/patient")
    page.fill("#token", carol.token(SETTINGS))
    page.click("#sign-in-form button[type=submit]")

    # what is due, from the rule table and its public source
    flu = page.locator('#reminder-list li[data-rule-id="influenza-yearly"]')
    expect(page.locator("#chart-list li", has_text="Blood pressure").first).to_contain_text(
        "Systolic blood pressure 138 mm[Hg], Diastolic blood pressure 88 mm[Hg]"
    )
    expect(flu).to_contain_text("Influenza vaccine")
    expect(flu).to_contain_text("overdue")
    expect(flu.get_by_role("link")).to_have_attribute(
        "href", re.compile(r"^https://www\.cdc\.gov/")
    )
    snap(page, "8-reminders")
    flu.get_by_label("Remind me again on").fill(
        (datetime.now(UTC) + timedelta(days=14)).date().isoformat()
    )
    flu.get_by_role("button", name="Snooze").click()
    expect(flu).to_contain_text("Snoozed until")
    expect(flu.get_by_role("button", name="Snooze")).to_have_count(0)
    tetanus = page.locator('#reminder-list li[data-rule-id="td-tdap-10-years"]')
    tetanus.get_by_role("button", name="Dismiss").click()
    expect(tetanus).to_have_count(0)

    # a vaccination she records closes its reminder
    pneumococcal = page.locator('#reminder-list li[data-rule-id="pneumococcal-from-50"]')
    expect(pneumococcal).to_contain_text("overdue")
    page.select_option("#add-kind", "immunization")
    page.select_option("#immunization-code", label="Pneumococcal (pneumonia)")
    page.fill("#immunization-date", (datetime.now(UTC) - timedelta(days=3)).date().isoformat())
    page.click("#add-button")
    expect(pneumococcal).to_contain_text("done")
    expect(pneumococcal).to_contain_text("Done: 1 entry in your chart")

    # her blood pressure, from her doctor's readings, and a symptom she tracks herself
    page.select_option("#trend-code", label="Systolic blood pressure")
    page.click("#trend-button")
    expect(page.locator("#trend-summary")).to_contain_text(
        "Systolic blood pressure: lowest 138 mm[Hg], highest 150 mm[Hg], last 138 mm[Hg]"
    )
    expect(page.locator("#trend-summary")).to_contain_text("going down (2 entries)")
    chart = page.locator("#trend-picture img")
    # the first picture a web process draws loads its plotting library: it may take seconds
    expect(chart).to_have_attribute("alt", re.compile("Systolic blood pressure"), timeout=30_000)
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    for severity in ("3", "7"):
        page.select_option("#add-kind", "symptom")
        page.fill("#symptom-severity", severity)
        page.click("#add-button")
        expect(page.locator("#chart-list li", has_text=f"{severity} out of 10")).to_be_visible()
    page.select_option("#trend-code", label="Headache")
    page.click("#trend-button")
    expect(page.locator("#trend-summary")).to_contain_text(
        "Headache: lowest 3 out of 10, highest 7 out of 10, last 7 out of 10 — going up"
    )
    expect(chart).to_have_attribute("alt", re.compile("Headache"))
    snap(page, "9-trends")
