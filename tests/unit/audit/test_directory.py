"""The directory of display names the console shows beside actor and organization ids."""

from pathlib import Path

import pytest

from services.audit.directory import Directory, directory_of


def test_a_directory_names_actors_and_organizations():
    directory = directory_of(
        '{"actors": {"practitioner:dr-lee": "Dr Ann Lee"}, "organizations": {"org-a": "North"}}'
    )

    assert directory == Directory({"practitioner:dr-lee": "Dr Ann Lee"}, {"org-a": "North"})


def test_a_directory_may_name_only_organizations():
    assert directory_of('{"organizations": {"org-a": "North"}}').actors == {}


@pytest.mark.parametrize(
    "text",
    ['["dr-lee"]', '{"people": {}}', '{"actors": {"dr-lee": 3}}', '{"organizations": []}'],
)
def test_a_malformed_directory_is_refused_at_start(text):
    with pytest.raises(ValueError):
        directory_of(text)


def test_the_demo_directory_names_the_demo_cast():
    text = (Path(__file__).resolve().parents[3] / "deploy" / "audit-directory.json").read_text()
    directory = directory_of(text)

    assert directory.actors["compliance:cora"] == "Cora (compliance)"
    assert directory.organizations["org-a"] == "Riverside Clinic"
