"""`caretrail demo`: the story of caretrail, told with real HTTP calls to a running system.

Every step says what should happen, does it, and checks it; the demo exits non-zero at the
first step that does not behave as told.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table
from standardwebhooks import Webhook

from caretrail.people import CAST, Person
from shared.config import DEFAULT_PORTS, Settings, service_address


class StepFailed(AssertionError):
    pass


@dataclass
class WebhookReceiver:
    """A patient app's webhook endpoint on loopback that checks every signature."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    secret: str | None = None

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = Webhook(receiver.secret or "").verify(body, dict(self.headers))
                    receiver.deliveries.append(
                        {"verified": True, "payload": payload, "id": self.headers.get("webhook-id")}
                    )
                except Exception:
                    receiver.deliveries.append({"verified": False})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_port}/caretrail"

    def stop(self) -> None:
        self._server.shutdown()


class Demo:
    def __init__(self, urls: dict[str, str], console: Console, settings: Settings) -> None:
        self.urls = urls
        self.console = console
        self.run_id = uuid.uuid4().hex[:6]
        self.patient_id = f"pat-alice-{self.run_id}"
        people = {p.key: p for p in CAST}
        people["patient"] = Person(
            "patient", people["patient"].title, "patient", "alice", patient=self.patient_id
        )
        self.tokens = {key: person.token(settings) for key, person in people.items()}
        self.people = people
        self.facts: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.step_number = 0

    # --- plumbing -----------------------------------------------------------------------

    def call(
        self,
        who: str,
        method: str,
        service: str,
        path: str,
        expect: int | tuple[int, ...],
        **kwargs: Any,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        response = requests.request(
            method, f"{self.urls[service]}{path}", headers=headers, timeout=10, **kwargs
        )
        expected = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in expected:
            raise StepFailed(
                f"{method} {path} as {who}: expected {expected}, got "
                f"{response.status_code} {response.text[:300]}"
            )
        return response

    def eventually(self, what: str, probe: Callable[[], Any], timeout_seconds: float = 20.0) -> Any:
        """Poll `probe` until it returns something truthy: facts travel through Kafka."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise StepFailed(f"{what}: not seen within {timeout_seconds:.0f}s")
            time.sleep(0.1)

    def step(self, title: str) -> None:
        self.step_number += 1
        self.console.rule(f"[bold]{self.step_number}. {title}")

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")

    def ok(self, text: str) -> None:
        self.console.print(f"   [green]✔[/green] {text}")

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*[str(v) if v is not None else "—" for v in row])
        self.console.print(table)

    # --- the story ----------------------------------------------------------------------

    def run(self) -> None:
        receiver = WebhookReceiver()
        webhook_url = receiver.start()
        try:
            self.patient_writes_a_phr_entry()
            self.doctor_a_writes_lab_results()
            self.doctor_b_is_denied()
            self.patient_connects_a_webhook(receiver, webhook_url)
            self.patient_grants_org_b_consent_for_labs()
            self.doctor_b_reads_labs_but_not_the_psy_note()
            self.doctor_b_uses_a_fhir_app()
            self.patient_sees_the_access(receiver)
            self.a_reminder_falls_due_and_alice_is_told(receiver)
            self.alice_follows_her_blood_pressure()
            self.patient_revokes()
            self.er_doctor_breaks_the_glass()
            self.compliance_reviews()
        finally:
            receiver.stop()

    def patient_writes_a_phr_entry(self) -> None:
        self.step("Alice adds a home blood-pressure reading to her chart (PHR)")
        body = observation("85354-9", "Blood pressure panel", value=128, unit="mm[Hg]")
        record = self.write("patient", body)
        if record["source"] != "phr":
            raise StepFailed(f"a patient's entry should be PHR, got {record['source']}")
        self.facts["phr"] = record["id"]
        self.ok(f"record {record['id']} (source {record['source']}, version {record['version']})")

    def write(self, who: str, resource: dict[str, Any]) -> dict[str, Any]:
        """Add `resource` to the patient's chart as `who`; the record as answered."""
        path = f"/patients/{self.patient_id}/records"
        record: dict[str, Any] = self.call(who, "POST", "records", path, 201, json=resource).json()
        return record

    def doctor_a_writes_lab_results(self) -> None:
        self.step("Dr Lee at Riverside Clinic (org A) records lab results (EHR)")
        hba1c = observation("4548-4", "Hemoglobin A1c", value=6.1, unit="%", category="laboratory")
        phq9 = observation(
            "44261-6", "PHQ-9 total score", value=7, unit="{score}", security=["PSY"]
        )
        lab, psy = self.write("dr-a", hba1c), self.write("dr-a", phq9)
        if lab["source"] != "ehr" or lab["author_org"] != "org-a":
            raise StepFailed("a practitioner's entry should be EHR of their organization")
        self.facts.update(lab=lab["id"], psy=psy["id"])
        self.table(
            "Alice's chart",
            ["record", "category", "source", "author", "labels"],
            [[self.facts["phr"], "Observation", "phr", "alice", ""]]
            + [
                [
                    r["id"],
                    r["category"],
                    r["source"],
                    f"{r['author']} ({r['author_org']})",
                    ", ".join(r["security"]),
                ]
                for r in (lab, psy)
            ],
        )

    def doctor_b_is_denied(self) -> None:
        self.step("Dr Kim at Lakeside Hospital (org B) tries to read the lab result")
        response = self.call(
            "dr-b",
            "GET",
            "records",
            f"/patients/{self.patient_id}/records/{self.facts['lab']}",
            403,
        )
        self.ok(f"403: {response.json().get('detail')}")

    def patient_connects_a_webhook(self, receiver: WebhookReceiver, url: str) -> None:
        self.step("Alice's phone app registers a webhook for her notifications")
        answer = self.call(
            "patient",
            "POST",
            "notify",
            f"/patients/{self.patient_id}/webhooks",
            201,
            json={"url": url},
        ).json()
        receiver.secret = answer["secret"]
        self.call(
            "patient",
            "PUT",
            "notify",
            f"/patients/{self.patient_id}/notification-preferences",
            200,
            json=all_kinds_on(["inbox", "webhook"]),
        )
        self.ok(f"webhook {url} registered; deliveries are signed (Standard Webhooks)")

    def patient_grants_org_b_consent_for_labs(self) -> None:
        self.step("Alice lets Lakeside Hospital read her observations — not mental-health data")
        now = datetime.now(UTC)
        consent = self.call(
            "patient",
            "POST",
            "consent",
            f"/patients/{self.patient_id}/consents",
            201,
            json={
                "grantee": {"type": "organization", "id": "org-b"},
                "actions": ["read"],
                "categories": ["Observation"],
                "security_labels": [],
                "purposes": ["TREAT"],
                "period": {"start": now.isoformat(), "end": (now + timedelta(days=30)).isoformat()},
            },
        ).json()
        self.facts["consent"] = consent["id"]
        self.ok(f"consent {consent['id']} is {consent['status']} (version {consent['version']})")

    def doctor_b_reads_labs_but_not_the_psy_note(self) -> None:
        self.step("Dr Kim reads Alice's chart under that consent")
        chart = f"/patients/{self.patient_id}/records"
        started = time.monotonic()

        def allowed() -> bool:
            return (
                self.call(
                    "dr-b", "GET", "records", f"{chart}/{self.facts['lab']}", (200, 403)
                ).status_code
                == 200
            )

        self.eventually("the consent reaching the records service", allowed)
        self.say(
            f"the consent took effect in records {time.monotonic() - started:.2f}s "
            "after it was granted"
        )
        listing = self.call("dr-b", "GET", "records", chart, 200).json()
        ids = [item["id"] for item in listing["items"]]
        if self.facts["lab"] not in ids or self.facts["psy"] in ids:
            raise StepFailed(f"Dr Kim should see the lab result and not the PSY note: {ids}")
        self.call("dr-b", "GET", "records", f"{chart}/{self.facts['psy']}", 403)
        self.table(
            "What Dr Kim sees",
            ["record", "category", "labels"],
            [[i["id"], i["category"], ", ".join(i.get("security", []))] for i in listing["items"]],
        )
        self.ok("the PSY-labelled note is withheld from the list and refused alone")

    def doctor_b_uses_a_fhir_app(self) -> None:
        self.step("Dr Kim's FHIR app asks the same chart through the FHIR R4 base, /fhir")
        fhir = {"Accept": "application/fhir+json"}
        statement = self.call("dr-b", "GET", "records", "/fhir/metadata", 200, headers=fhir).json()
        types = [r["type"] for r in statement["rest"][0]["resource"]]
        self.say(f"CapabilityStatement: FHIR {statement['fhirVersion']}, {', '.join(types)}")
        bundle = self.call(
            "dr-b",
            "GET",
            "records",
            f"/fhir/Observation?patient={self.patient_id}&_sort=-date&_count=10",
            200,
            headers=fhir,
        ).json()
        ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
        if self.facts["lab"] not in ids or self.facts["psy"] in ids:
            raise StepFailed(f"the FHIR search should show the lab result only: {ids}")
        self.table(
            "GET /fhir/Observation?patient=…&category=laboratory (a searchset Bundle)",
            ["fullUrl", "value"],
            [[e["fullUrl"], f"{e['resource']['valueQuantity']['value']}"] for e in bundle["entry"]],
        )
        refused = self.call(
            "dr-b", "GET", "records", f"/fhir/Observation/{self.facts['psy']}", 403, headers=fhir
        ).json()
        self.ok(
            f"the PSY note is absent from the Bundle and refused alone: "
            f"{refused['resourceType']} ({refused['issue'][0]['code']})"
        )

    def patient_sees_the_access(self, receiver: WebhookReceiver) -> None:
        self.step("Alice is told who read her data")
        inbox = f"/patients/{self.patient_id}/notifications"

        def read_notice() -> list[dict[str, Any]]:
            items = self.call("patient", "GET", "notify", inbox, 200).json()["items"]
            return [n for n in items if "org-b" in json.dumps(n)]

        notices = self.eventually("a notification of Dr Kim's read", read_notice)
        self.table(
            "Alice's inbox",
            ["kind", "message"],
            [[n["kind"], n["body"]] for n in notices[:5]],
        )
        verified = self.eventually(
            "a signed webhook delivery",
            lambda: [d for d in receiver.deliveries if d["verified"]],
        )
        if any(not d["verified"] for d in receiver.deliveries):
            raise StepFailed("a webhook delivery had a bad signature")
        self.ok(f"{len(verified)} webhook deliveries, every signature verified")

    def a_reminder_falls_due_and_alice_is_told(self, receiver: WebhookReceiver) -> None:
        self.step("Alice's chart knows her age and shots: a preventive-care reminder falls due")
        today = datetime.now(UTC).date()
        born = today.replace(year=today.year - 30) - timedelta(days=10)
        self.write("dr-a", immunization("115", "Tdap", today - timedelta(days=3 * 365)))
        self.write("patient", immunization("158", "Influenza", today - timedelta(days=395)))
        # Her age last: until the chart knows it no rule applies, so nothing is announced
        # that the shots already on their way to the chart will close.
        self.write("patient", {"resourceType": "Patient", "birthDate": born.isoformat()})
        path = f"/patients/{self.patient_id}/reminders"
        answer = self.call("patient", "GET", "records", path, 200).json()
        reminders = {r["rule_id"]: r for r in answer["reminders"]}
        if reminders.get("influenza-yearly", {}).get("status") != "due":
            raise StepFailed(f"the yearly flu shot should be due: {answer}")
        self.table(
            f"Alice's reminders (rule set {answer['rule_set_version']})",
            ["reminder", "status", "due", "source"],
            [
                [r["title"], r["status"], r["due_date"], r["source"]["title"]]
                for r in reminders.values()
            ],
        )
        told = self.eventually(
            "the reminder in Alice's inbox",
            lambda: [
                n
                for n in self.call(
                    "patient", "GET", "notify", f"/patients/{self.patient_id}/notifications", 200
                ).json()["items"]
                if n["kind"] == "reminder-due"
            ],
        )
        pushed = self.eventually(
            "the reminder on Alice's webhook",
            lambda: [
                d
                for d in receiver.deliveries
                if d["verified"] and d["payload"]["data"].get("kind") == "reminder-due"
            ],
        )
        said = json.dumps([told, pushed]).lower()
        if "influenza" in said or "flu" in said:
            raise StepFailed("a reminder's notification must not name the vaccine or test")
        self.ok(f'inbox and webhook: "{told[0]["body"]}" — no vaccine, test or condition named')
        trail = self.eventually(
            "reminder.due in the audit trail",
            lambda: self.call(
                "patient",
                "GET",
                "audit",
                "/audit/events",
                200,
                params={"patient": self.patient_id, "type": "caretrail.reminder.due.v1"},
            ).json()["items"],
        )
        fact = trail[0]
        self.ok(
            f"the fact on Kafka: {fact['type']} by {fact['actor']} "
            f"({fact['topic']}, partition {fact['partition']}, offset {fact['offset']}): "
            "patient, rule id, due date and rule set version, nothing more"
        )

    def alice_follows_her_blood_pressure(self) -> None:
        self.step("Alice follows her blood pressure: home readings and the clinic's, one trend")
        now = datetime.now(UTC)
        readings = [
            ("patient", 148, 94),
            ("patient", 142, 91),
            ("dr-a", 138, 88),
            ("patient", 131, 84),
        ]
        for weeks_ago, (who, systolic, diastolic) in zip((9, 6, 3, 0), readings, strict=True):
            taken = now - timedelta(weeks=weeks_ago, hours=1)
            self.write(who, blood_pressure(taken, systolic, diastolic))
        path = f"/patients/{self.patient_id}/trends"
        query = {"code": "http://loinc.org|8480-6"}
        trend = self.call("patient", "GET", "records", path, 200, params=query).json()
        if [p["value"] for p in trend["points"]] != [148, 142, 138, 131]:
            raise StepFailed(f"the systolic series should be the four readings: {trend}")
        self.table(
            f"Systolic blood pressure ({trend['unit']})",
            ["when", "value", "source"],
            [[p["time"][:16].replace("T", " "), p["value"], p["source"]] for p in trend["points"]],
        )
        summary = trend["summary"]
        self.ok(
            f"min {summary['min']:g}, max {summary['max']:g}, last {summary['last']:g}: "
            f"{summary['direction']}"
        )
        picture = self.call(
            "patient",
            "GET",
            "records",
            path,
            200,
            params=query,
            headers={"Accept": "image/svg+xml"},
        )
        saved = Path("var/demo") / f"{self.patient_id}-systolic.svg"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(picture.content)
        self.ok(f"the same as a chart: {saved} (SVG, opens in any browser)")

    def patient_revokes(self) -> None:
        self.step("Alice revokes the consent; Dr Kim is refused again")
        revoked = self.call(
            "patient", "POST", "consent", f"/consents/{self.facts['consent']}/revoke", 200
        ).json()
        started = time.monotonic()
        path = f"/patients/{self.patient_id}/records/{self.facts['lab']}"
        self.eventually(
            "the revocation reaching the records service",
            lambda: self.call("dr-b", "GET", "records", path, (200, 403)).status_code == 403,
        )
        self.timings["revocation_to_enforcement_s"] = time.monotonic() - started
        self.ok(
            f"consent {revoked['status']}; enforced "
            f"{self.timings['revocation_to_enforcement_s']:.2f}s later"
        )

    def er_doctor_breaks_the_glass(self) -> None:
        self.step("Alice arrives unconscious at City ER: Dr Ortiz breaks the glass")
        path = f"/patients/{self.patient_id}/records"
        listing = self.call(
            "dr-er",
            "GET",
            "records",
            path,
            200,
            headers={
                # The reason is a code compliance sees; the note is sealed with Alice's key.
                "X-Break-Glass-Reason": "OVRER",
                "X-Break-Glass-Note": "unconscious on arrival",
                "X-Purpose-Of-Use": "ETREAT",
            },
        ).json()
        self.ok(f"emergency access to {len(listing['items'])} records, flagged for review")
        inbox = f"/patients/{self.patient_id}/notifications"

        def alert() -> list[dict[str, Any]]:
            items = self.call("patient", "GET", "notify", inbox, 200).json()["items"]
            return [n for n in items if n["kind"] == "break-glass"]

        self.eventually("the break-glass alert in Alice's inbox", alert)
        self.ok("Alice is alerted at once")

    def compliance_reviews(self) -> None:
        self.step("Cora, compliance officer, accounts for every disclosure")
        path = f"/audit/patients/{self.patient_id}/disclosures"

        def disclosures() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = self.call("compliance", "GET", "audit", path, 200).json()[
                "items"
            ]
            kinds = {json.dumps(i) for i in items}
            has_er = any("dr-ortiz" in k for k in kinds)
            return items if has_er and any("dr-kim" in k for k in kinds) else []

        items = self.eventually("the disclosures in the audit trail", disclosures)
        self.table(
            "Accounting of disclosures",
            ["when", "who", "org", "outcome", "why"],
            [
                [
                    i.get("time"),
                    i.get("actor"),
                    i.get("org"),
                    i.get("outcome"),
                    i.get("break_glass_reason_display")
                    or i.get("break_glass_reason")
                    or ", ".join(i.get("consent_ids") or [])
                    or i.get("purpose"),
                ]
                for i in items
            ],
        )
        queue = self.eventually(
            "the break-glass access in the review queue",
            lambda: [
                e
                for e in self.call(
                    "compliance", "GET", "audit", "/audit/break-glass?reviewed=false", 200
                ).json()["items"]
                if e.get("patient") == self.patient_id
            ],
        )
        entry = queue[0]
        if entry.get("break_glass_note"):
            opened = self.call(
                "compliance",
                "POST",
                "records",
                f"/patients/{self.patient_id}/break-glass-notes/open",
                200,
                json={"note": entry["break_glass_note"]},
            ).json()
            self.ok(f"the sealed note opened in records (itself a fact): {opened['note']!r}")
        self.call(
            "compliance",
            "POST",
            "audit",
            f"/audit/break-glass/{entry['id']}/review",
            (200, 201),
            json={"decision": "justified", "note": "ER admission confirmed"},
        )
        self.ok(f"break-glass access {entry['id']} reviewed: justified")
        verify = self.call("compliance", "GET", "audit", "/audit/verify", 200).json()
        if not verify["ok"]:
            raise StepFailed(f"the audit chain does not verify: {verify}")
        self.ok(
            f"audit chain verified: {len(verify['partitions'])} partitions, "
            f"{sum(p['entries'] for p in verify['partitions'])} entries, all intact"
        )


def observation(
    code: str,
    display: str,
    *,
    value: float,
    unit: str,
    category: str = "vital-signs",
    security: list[str] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "effectiveDateTime": datetime.now(UTC).isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if security:
        resource["meta"] = {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": label}
                for label in security
            ]
        }
    return resource


def immunization(cvx: str, display: str, on: date) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {
            "coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx, "display": display}]
        },
        "occurrenceDateTime": on.isoformat(),
        "patient": {"display": "Alice"},
    }


def blood_pressure(taken: datetime, systolic: int, diastolic: int) -> dict[str, Any]:
    def part(code: str, display: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    panel = observation("85354-9", "Blood pressure panel", value=0, unit="mm[Hg]")
    del panel["valueQuantity"]
    panel["effectiveDateTime"] = taken.isoformat()
    panel["component"] = [
        part("8480-6", "Systolic blood pressure", systolic),
        part("8462-4", "Diastolic blood pressure", diastolic),
    ]
    return panel


NOTIFICATION_KINDS = (
    "record-accessed",
    "break-glass",
    "access-denied",
    "consent-granted",
    "consent-revoked",
    "consent-expired",
    "consent-expiring",
    "record-added",
    "reminder-due",
)


def all_kinds_on(channels: list[str]) -> dict[str, Any]:
    return {
        "kinds": {
            kind: {"channels": channels, "delivery": "immediate"} for kind in NOTIFICATION_KINDS
        }
    }


def main(urls: dict[str, str] | None = None) -> int:
    console = Console()
    urls = urls or {s: f"http://{service_address(s)}" for s in DEFAULT_PORTS}
    demo = Demo(urls, console, Settings.from_env("cli"))
    console.print(f"[bold]caretrail demo[/bold] — patient {demo.patient_id}")
    try:
        demo.run()
    except (StepFailed, requests.RequestException) as err:
        console.print(f"[red]✘ step {demo.step_number} failed:[/red] {err}")
        return 1
    console.rule("[green]every step behaved as told")
    console.print(
        f"Alice's own page: {urls['records']}/patient — sign in with the token of "
        f"`caretrail token --role patient --sub alice --patient {demo.patient_id}`",
        soft_wrap=True,
    )
    return 0
