"""The demo's cast: who they are and the local tokens they use."""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth import mint_token
from shared.config import Settings


@dataclass(frozen=True)
class Person:
    key: str
    title: str
    role: str
    sub: str
    org: str | None = None
    patient: str | None = None

    def token(self, settings: Settings, ttl_seconds: int = 12 * 3600) -> str:
        return mint_token(
            settings,
            role=self.role,
            sub=self.sub,
            org=self.org,
            patient=self.patient,
            ttl_seconds=ttl_seconds,
        )


CAST = (
    Person("patient", "Alice, a patient", "patient", "alice", patient="pat-alice"),
    Person(
        "dr-a",
        "Dr Lee, family doctor at Riverside Clinic (org A)",
        "practitioner",
        "dr-lee",
        org="org-a",
    ),
    Person(
        "dr-b",
        "Dr Kim, cardiologist at Lakeside Hospital (org B)",
        "practitioner",
        "dr-kim",
        org="org-b",
    ),
    Person(
        "dr-er",
        "Dr Ortiz, emergency physician at City ER",
        "practitioner",
        "dr-ortiz",
        org="org-er",
    ),
    Person("compliance", "Cora, compliance officer", "compliance", "cora"),
    Person("admin", "The operator", "admin", "ops"),
)
