"""Which preventive-care reminders a chart calls for, on a fixed day, with the real rule table."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.records.reminders import (
    DONE,
    DUE,
    OVERDUE,
    SNOOZED,
    Choice,
    Entry,
    InvalidRuleSet,
    as_seen,
    evaluate,
    find,
    reminder_due,
    rule_set_from,
    snooze_until,
    to_announce,
)
from services.records.reminding import rule_table
from shared.errors import InvalidInput, NotFound

TODAY = date(2026, 6, 15)
RULES = rule_table()
CVX, LOINC, SNOMED = "http://hl7.org/fhir/sid/cvx", "http://loinc.org", "http://snomed.info/sct"


def patient(birth: str, gender: str = "female", birth_sex: str | None = None) -> Entry:
    resource: dict[str, Any] = {"resourceType": "Patient", "birthDate": birth, "gender": gender}
    if birth_sex:
        resource["extension"] = [
            {
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                "valueCode": birth_sex,
            }
        ]
    return Entry("rec-patient", resource)


def shot(record_id: str, cvx: str, on: str, status: str = "completed") -> Entry:
    return Entry(
        record_id,
        {
            "resourceType": "Immunization",
            "status": status,
            "vaccineCode": {"coding": [{"system": CVX, "code": cvx}]},
            "occurrenceDateTime": on,
        },
    )


def observation(record_id: str, code: str, on: str) -> Entry:
    return Entry(
        record_id,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": on,
        },
    )


def procedure(record_id: str, code: str, on: str) -> Entry:
    return Entry(
        record_id,
        {
            "resourceType": "Procedure",
            "status": "completed",
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "performedDateTime": on,
        },
    )


def statuses(entries: list[Entry], today: date = TODAY) -> dict[str, str]:
    return {r.rule.id: r.status for r in evaluate(RULES, entries, today)}


def test_every_rule_cites_a_public_source_and_the_table_has_a_version():
    assert RULES.version
    for rule in RULES.rules:
        assert rule.source.url.startswith("https://www.")
        assert (
            "cdc.gov" in rule.source.url or "uspreventiveservicestaskforce.org" in rule.source.url
        )


def test_a_chart_without_a_birth_date_has_no_reminders():
    assert evaluate(RULES, [shot("r1", "140", "2020-10-01")], TODAY) == []


def test_a_woman_of_52_with_nothing_recorded_is_overdue_for_every_rule_of_her_age_and_sex():
    assert statuses([patient("1974-03-02")]) == {
        "influenza-yearly": OVERDUE,
        "td-tdap-10-years": OVERDUE,
        "zoster-from-50": OVERDUE,
        "pneumococcal-from-50": OVERDUE,
        "blood-pressure-40-plus": OVERDUE,
        "colorectal-cancer-screening": OVERDUE,
        "cervical-cancer-screening": OVERDUE,
        "breast-cancer-screening": OVERDUE,
        "lipid-screening": OVERDUE,
    }


def test_sex_at_birth_comes_from_the_birthsex_extension_before_gender():
    rules = statuses([patient("1974-03-02", gender="female", birth_sex="M")])
    assert "cervical-cancer-screening" not in rules
    assert "breast-cancer-screening" not in rules
    assert "colorectal-cancer-screening" in rules


def test_a_young_adult_gets_only_the_rules_of_their_age():
    assert set(statuses([patient("2004-01-01", gender="male")])) == {
        "influenza-yearly",
        "td-tdap-10-years",
        "blood-pressure-18-39",
    }


def test_a_flu_shot_this_season_is_done_until_a_year_later_then_due_then_overdue():
    chart = [patient("1980-01-01"), shot("flu", "158", "2025-10-01")]
    (flu,) = [r for r in evaluate(RULES, chart, TODAY) if r.rule.id == "influenza-yearly"]
    assert (flu.status, flu.due_date, flu.evidence) == (DONE, date(2026, 10, 1), ("flu",))
    assert statuses(chart, date(2026, 10, 2))["influenza-yearly"] == DUE
    assert statuses(chart, date(2027, 1, 1))["influenza-yearly"] == OVERDUE


def test_a_vaccine_marked_not_done_does_not_count():
    chart = [patient("1980-01-01"), shot("flu", "158", "2026-01-10", status="not-done")]
    assert statuses(chart)["influenza-yearly"] == OVERDUE


def test_the_newest_entry_decides_and_every_matching_record_is_evidence():
    chart = [
        patient("1980-01-01"),
        shot("td-new", "115", "2019-05-01"),
        shot("td-old", "09", "2008-05-01"),
    ]
    (td,) = [r for r in evaluate(RULES, chart, TODAY) if r.rule.id == "td-tdap-10-years"]
    assert (td.status, td.due_date, td.evidence) == (DONE, date(2029, 5, 1), ("td-new", "td-old"))


def test_each_way_to_screen_for_colorectal_cancer_lasts_its_own_interval():
    fit = [patient("1970-01-01"), observation("fit", "29771-3", "2024-06-01")]
    colonoscopy = [patient("1970-01-01"), procedure("scope", "73761001", "2018-06-01")]
    assert statuses(fit)["colorectal-cancer-screening"] == OVERDUE  # yearly, 2 years ago
    assert statuses(colonoscopy)["colorectal-cancer-screening"] == DONE  # 10 years


def test_a_two_dose_series_is_due_after_the_first_dose_and_done_after_the_second():
    one = [patient("1970-01-01"), shot("rzv-1", "187", "2026-05-01")]
    both = [*one, shot("rzv-2", "187", "2026-06-01")]
    (first,) = [r for r in evaluate(RULES, one, TODAY) if r.rule.id == "zoster-from-50"]
    assert (first.status, first.due_date) == (DONE, date(2026, 6, 30))
    assert statuses(one, date(2026, 7, 1))["zoster-from-50"] == DUE
    assert statuses(both, date(2030, 1, 1))["zoster-from-50"] == DONE


def test_a_blood_pressure_panel_satisfies_the_blood_pressure_check():
    chart = [patient("1970-01-01"), observation("bp", "85354-9", "2026-03-01T08:00:00Z")]
    assert statuses(chart)["blood-pressure-40-plus"] == DONE


def test_a_rule_ends_at_its_maximum_age():
    assert "colorectal-cancer-screening" not in statuses([patient("1950-01-01")])


def test_a_birthday_on_29_february_reaches_an_age_on_28_february():
    chart = [patient("1976-02-29")]
    (zoster,) = [r for r in evaluate(RULES, chart, TODAY) if r.rule.id == "zoster-from-50"]
    assert zoster.due_date == date(2026, 2, 28)


def test_a_snoozed_reminder_shows_as_snoozed_until_the_snooze_ends():
    reminders = evaluate(RULES, [patient("1980-01-01")], TODAY)
    choices = {"influenza-yearly": Choice(snoozed_until=date(2026, 7, 1))}
    flu = find(as_seen(reminders, choices, TODAY), "influenza-yearly")
    assert (flu.status, flu.snoozed_until) == (SNOOZED, date(2026, 7, 1))
    assert find(as_seen(reminders, choices, date(2026, 7, 1)), "influenza-yearly").status == OVERDUE


def test_a_dismissed_reminder_is_hidden_until_it_falls_due_again_on_another_date():
    reminders = evaluate(RULES, [patient("1980-01-01")], TODAY)
    flu = find(reminders, "influenza-yearly")
    choices = {"influenza-yearly": Choice(dismissed_due=flu.due_date)}
    assert "influenza-yearly" not in {r.rule.id for r in as_seen(reminders, choices, TODAY)}
    later = evaluate(
        RULES, [patient("1980-01-01"), shot("f", "158", "2026-06-01")], date(2027, 6, 2)
    )
    assert find(as_seen(later, choices, date(2027, 6, 2)), "influenza-yearly").status == DUE


def test_a_snooze_must_end_after_today_and_within_a_year():
    assert snooze_until(date(2026, 6, 16), TODAY) == date(2026, 6, 16)
    for bad in (TODAY, date(2026, 1, 1), date(2027, 7, 1)):
        with pytest.raises(InvalidInput):
            snooze_until(bad, TODAY)


def test_an_unknown_reminder_is_not_found():
    with pytest.raises(NotFound):
        find(evaluate(RULES, [patient("1980-01-01")], TODAY), "no-such-rule")


def test_a_reminder_is_announced_once_per_due_date_and_not_while_snoozed_or_dismissed():
    reminders = evaluate(RULES, [patient("2004-01-01", gender="male")], TODAY)
    fresh = {r.rule.id for r in to_announce(reminders, {}, {}, TODAY)}
    assert fresh == {"influenza-yearly", "td-tdap-10-years", "blood-pressure-18-39"}
    told = {r.rule.id: r.due_date for r in reminders}
    assert to_announce(reminders, told, {}, TODAY) == []
    choices = {
        "influenza-yearly": Choice(snoozed_until=date(2026, 7, 1)),
        "td-tdap-10-years": Choice(dismissed_due=find(reminders, "td-tdap-10-years").due_date),
    }
    assert [r.rule.id for r in to_announce(reminders, {}, choices, TODAY)] == [
        "blood-pressure-18-39"
    ]


def test_the_reminder_due_event_names_the_rule_date_and_version_and_nothing_clinical():
    reminder = find(evaluate(RULES, [patient("1980-01-01")], TODAY), "influenza-yearly")
    event = reminder_due("pat-1", reminder, RULES.version)
    assert event.type == "caretrail.reminder.due.v1"
    assert event.actor == "system"
    assert event.data == {
        "patient": "pat-1",
        "rule_id": "influenza-yearly",
        "due_date": "1999-01-01",
        "rule_set_version": RULES.version,
    }
    assert "nfluenza vaccine" not in str(event.data)


def test_a_rule_table_that_repeats_an_id_is_refused():
    table = {
        "version": "1",
        "overdue_after_days": 90,
        "rules": [
            {
                "id": "x",
                "title": "X",
                "kind": "screening",
                "min_age": 18,
                "source": {"title": "t", "url": "https://example.org"},
                "satisfied_by": [{"system": LOINC, "codes": ["1-1"], "every_years": 1}],
            }
        ]
        * 2,
    }
    with pytest.raises(InvalidRuleSet):
        rule_set_from(table)
