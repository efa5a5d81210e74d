"""The console's words: every event type and purpose a trail can hold has a name in words."""

from services.audit.console import vocabulary
from shared.events import PURPOSES, REGISTRY


def test_every_event_type_and_purpose_has_words_for_a_compliance_officer():
    words = vocabulary()

    assert len(words["types"]) == len(REGISTRY)
    assert set(words["purposes"]) == set(PURPOSES)
    assert words["types"]["access.denied"] == "Access refused"
    assert words["purposes"]["ETREAT"] == "emergency treatment"
