"""Documents generated from the code: the AsyncAPI 3.0 event catalogue and each OpenAPI file.

`caretrail docs` writes them under docs/; tests regenerate them and compare, so the files in
the repository cannot drift from the registry and the blueprints.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared.config import DEFAULT_PORTS, Settings
from shared.events import REGISTRY, SPEC_PREFIX, SPEC_SUFFIX, TOPIC_DLQ

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GATEWAY = ROOT / "deploy" / "nginx"
# The services whose FHIR bases deploy/nginx serves as one `/fhir`.
FHIR_SERVICES = ("records", "consent", "audit")
PRODUCER = {
    "caretrail.records.v1": "records",
    "caretrail.access.v1": "records",
    "caretrail.consent.v1": "consent",
    "caretrail.notify.v1": "notify",
    "caretrail.audit.v1": "audit",
}
CLOUDEVENT_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary content mode (ce_* headers).",
    "required": [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_time",
        "ce_subject",
        "ce_signature",
    ],
    "properties": {
        "ce_id": {"type": "string", "description": "UUIDv7; consumers deduplicate on it"},
        "ce_source": {"type": "string", "description": "caretrail/<service>"},
        "ce_type": {"type": "string"},
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "patient id (also the Kafka key)"},
        "ce_actor": {"type": "string", "description": "<role>:<subject id> or system"},
        "ce_traceparent": {"type": "string", "description": "W3C trace context"},
        "ce_partitionkey": {"type": "string"},
        "ce_signature": {
            "type": "string",
            "description": "base64 Ed25519 signature by the source's key over the RFC 8785 "
            "JSON of actor, datadigest (hex SHA-256 of the value), id, source, subject, time "
            "(UTC, microseconds, Z) and type; consumers dead-letter a fact whose signature "
            "does not verify for its source (keys: each service's "
            "/.well-known/caretrail-fact-signing-key)",
        },
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def _camel(short: str) -> str:
    parts = short.replace("-", ".").split(".")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def _schemas() -> dict[str, Any]:
    spec = APISpec("events", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    for schema in sorted({e.schema for e in REGISTRY.values()}, key=lambda s: s.__name__):
        spec.components.schema(schema.__name__, schema=schema)
    schemas: dict[str, Any] = spec.to_dict()["components"]["schemas"]
    return schemas


def asyncapi_document() -> dict[str, Any]:
    """The event catalogue of shared.events.REGISTRY as an AsyncAPI 3.0 document."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, etype in sorted(REGISTRY.items()):
        short = name.removeprefix(SPEC_PREFIX).removesuffix(SPEC_SUFFIX)
        key = _camel(short)
        channel = etype.topic.removeprefix(SPEC_PREFIX).removesuffix(SPEC_SUFFIX)
        messages[key] = {
            "name": name,
            "title": short,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"#/components/schemas/{etype.schema.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "patient id"}}},
        }
        entry = channels.setdefault(
            channel,
            {
                "address": etype.topic,
                "description": f"Kept forever; keyed by patient id; written by "
                f"{PRODUCER[etype.topic]}.",
                "messages": {},
            },
        )
        entry["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        operations[f"send{key[0].upper()}{key[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"}],
            "summary": f"{PRODUCER[etype.topic]} publishes {short} through its outbox",
        }
    channels["dlq"] = {
        "address": TOPIC_DLQ,
        "description": "Messages a consumer could not handle, as they were, with dlq_consumer, "
        "dlq_topic, dlq_partition, dlq_offset, dlq_error and dlq_tries headers.",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "caretrail events",
            "version": "1.0.0",
            "description": "Every fact of caretrail: CloudEvents 1.0 in Kafka binary mode.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventHeaders": CLOUDEVENT_HEADERS, **_schemas()},
        },
    }


def served(service: str, path: str) -> dict[str, Any]:
    """What the service's app answers at `path`, built over an in-memory database."""
    module = importlib.import_module(f"services.{service}.app")
    settings = Settings.from_env(service, database_url="sqlite://")
    app = module.create_app(settings)
    document: dict[str, Any] = app.test_client().get(path).get_json()
    return document


def openapi_document(service: str) -> dict[str, Any]:
    """The OpenAPI document the service's app serves at /openapi.json."""
    document = served(service, "/openapi.json")
    document["servers"] = [{"url": f"http://127.0.0.1:{DEFAULT_PORTS[service]}"}]
    return document


def gateway_capability_statement() -> dict[str, Any]:
    """One CapabilityStatement for the three FHIR bases behind deploy/nginx's single `/fhir`:
    records' (its security, its types), with consent's Consent and audit's AuditEvent added.
    It names no URL: the gateway serves it wherever it is put."""
    statements = [served(service, "/fhir/metadata") for service in FHIR_SERVICES]
    merged = statements[0]
    merged["name"] = "caretrail"
    merged["implementation"] = {
        "description": "caretrail: the chart (records), consents and the audit trail "
        "behind one FHIR base"
    }
    rest = merged["rest"][0]
    rest["documentation"] = (
        "The patient chart (every read, search and $everything is an access fact), the "
        "patient's consents (an opt-in permit to read, for named purposes, until an end) and "
        "the tamper-evident audit trail, at one base."
    )
    rest["resource"] = [r for s in statements for r in s["rest"][0]["resource"]]
    return merged


def rendered() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {
        DOCS / "asyncapi.yaml": yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100)
    }
    for service in DEFAULT_PORTS:
        files[DOCS / "openapi" / f"{service}.json"] = (
            json.dumps(openapi_document(service), indent=2, sort_keys=True) + "\n"
        )
    files[GATEWAY / "metadata.json"] = (
        json.dumps(gateway_capability_statement(), indent=2, sort_keys=True) + "\n"
    )
    return files


def write() -> list[Path]:
    written = []
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
