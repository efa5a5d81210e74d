"""Display names of the people and organizations the trail names by id, from configuration.

The trail keeps `practitioner:dr-lee` and `org-a`; a compliance officer reads "Dr Ann Lee"
and "Northside Clinic". `CARETRAIL_AUDIT_DIRECTORY_FILE` names a JSON file:

    {"actors": {"practitioner:dr-lee": "Dr Ann Lee"}, "organizations": {"org-a": "Northside"}}

Names are shown beside the ids, never instead of them: the id is what the trail proves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import Settings

_SECTIONS = ("actors", "organizations")


@dataclass(frozen=True)
class Directory:
    actors: Mapping[str, str] = field(default_factory=dict)
    organizations: Mapping[str, str] = field(default_factory=dict)


def directory_of(text: str) -> Directory:
    """The directory a JSON text describes; ValueError naming what is wrong with it."""
    document = json.loads(text)
    if not isinstance(document, dict) or set(document) - set(_SECTIONS):
        raise ValueError(f"a directory is an object with at most {' and '.join(_SECTIONS)}")
    for section in _SECTIONS:
        names = document.get(section, {})
        if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in names.items()
        ):
            raise ValueError(f"the directory's {section} must map ids to names (text)")
    return Directory(document.get("actors", {}), document.get("organizations", {}))


def load_directory(settings: Settings) -> Directory:
    """The directory of `directory_file`, or an empty one when none is configured."""
    named = settings.extra.get("directory_file")
    return directory_of(Path(named).read_text()) if named else Directory()
