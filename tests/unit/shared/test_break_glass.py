"""The value set of break-glass reasons: small, coded, each with words for people."""

from __future__ import annotations

from shared.break_glass import ACT_REASON, BY_CODE, CODES, REASONS, reason_display


def test_each_reason_has_a_unique_code_and_words_and_only_other_needs_a_note():
    assert len(CODES) == len(set(CODES)) == len(REASONS) <= 6
    assert all(r.display.strip() and r.code.strip() for r in REASONS)
    assert [r.code for r in REASONS if r.needs_note] == ["other"]


def test_hl7_codes_are_the_consent_override_reasons_of_v3_act_reason():
    hl7 = {r.code for r in REASONS if r.system == ACT_REASON}
    assert hl7 == {"OVRER", "OVRPS"}


def test_the_words_of_a_code_and_none_for_text_that_is_no_code():
    assert reason_display("OVRER") == BY_CODE["OVRER"].display
    assert reason_display(None) is None
    # A fact from before reasons were coded holds free text: never shown as if it were words.
    assert reason_display("unconscious, suspected overdose") is None
