"""Does the chart judge FHIR resources as HAPI FHIR does? The corpus against `$validate`, on demand.

    ../shared/peers/hapi.sh start
    .venv/bin/python -m bench.fhir_validate [--hapi URL] [--out FILE.md]   # URL: hapi.sh url
    ../shared/peers/hapi.sh stop

Posts every resource of tests/fixtures/fhir_corpus (valid/ and invalid/) to HAPI's
`POST /{type}/$validate`, takes HAPI's verdict (invalid when an issue is `error` or `fatal`),
sets it beside the chart's (`services.records.resources.validate_resource`) and prints a
markdown table with the agreement. Not run in CI: CI never runs HAPI.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from services.records.resources import validate_resource
from shared.errors import InvalidInput

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fhir_corpus"
HAPI = "http://127.0.0.1:8090/fhir"  # what hapi.sh serves by default
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Judgement:
    name: str
    expected: str  # "valid", or the element and rule the corpus says are broken
    ours: list[str]  # the chart's issues, as "path rule"
    hapi: list[str]  # HAPI's error and fatal issues, as "location: message"

    @property
    def agree(self) -> bool:
        return bool(self.ours) == bool(self.hapi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hapi", default=HAPI, help=f"HAPI FHIR base URL (default {HAPI})")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    base = args.hapi.rstrip("/")
    judgements = [judge(path, base) for path in sorted(CORPUS.glob("*/*.json"))]
    table = report(judgements, base)
    print(table)
    if args.out:
        args.out.write_text(table)


def judge(path: Path, base: str) -> Judgement:
    case = json.loads(path.read_text())
    resource = case.get("resource", case)
    expect = case.get("expect")
    expected = f"{expect['path']} {expect['rule']}" if expect else "valid"
    return Judgement(
        f"{path.parent.name}/{path.stem}", expected, ours(resource), hapi(resource, base)
    )


def ours(resource: dict[str, Any]) -> list[str]:
    try:
        validate_resource(resource, "pat-1")
    except InvalidInput as refused:
        return [f"{e['path']} {e['problem']}" for e in refused.errors or [{"path": "?"}]]
    return []


def hapi(resource: dict[str, Any], base: str) -> list[str]:
    answer = requests.post(
        f"{base}/{resource['resourceType']}/$validate",
        data=json.dumps(resource),
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        timeout=120,
    )
    outcome = answer.json()
    return [
        f"{', '.join(issue.get('expression', issue.get('location', ['?'])))}: "
        f"{issue.get('diagnostics', '')}"
        for issue in outcome.get("issue", [])
        if issue.get("severity") in ("error", "fatal")
    ]


def report(judgements: list[Judgement], base: str) -> str:
    agreed = sum(j.agree for j in judgements)
    lines = [
        f"Corpus judged by caretrail and by HAPI FHIR `$validate` at {base}: "
        f"{agreed} of {len(judgements)} agree.",
        "",
        "| resource | corpus says | caretrail | HAPI FHIR (errors) | agree |",
        "|---|---|---|---|---|",
    ]
    for j in judgements:
        ours_text = "<br>".join(j.ours) or "valid"
        hapi_text = "<br>".join(h.replace("|", "\\|") for h in j.hapi) or "valid"
        lines.append(
            f"| {j.name} | {j.expected} | {ours_text} | {hapi_text} | "
            f"{'yes' if j.agree else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
