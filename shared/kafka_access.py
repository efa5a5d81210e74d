"""Who a Kafka client is, how it proves it, and what each service may do on the broker.

The broker authenticates every client with SASL/SCRAM-SHA-512 over TLS and authorises it
with ACLs (`StandardAuthorizer`, nothing allowed without an ACL): a service writes only the
topics it owns and reads only what it consumes and its own topics, so a process that can
reach the broker but holds no service's password can neither put a fact on a topic nor read
one.

A process's identity comes from its environment: `KAFKA_SECURITY_PROTOCOL` (`SASL_SSL`,
`SASL_PLAINTEXT`, or `PLAINTEXT` for a broker without authentication), `KAFKA_SASL_USERNAME`
and `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CAFILE` (the CA that signed the broker's certificate).
`caretrail web|worker <service>` runs as the service's own principal when
`CARETRAIL_<SERVICE>_KAFKA_PASSWORD` is set (`act_as`).

Where a password cannot be put in the environment (docker compose reads no file into a
variable), `CARETRAIL_KAFKA_CREDENTIALS_DIR` names a directory whose `secrets.json` holds each
principal's password (`caretrail kafka credentials` makes it): a password the environment
does not give is read there. The environment wins over the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from shared.events import (
    FACT_TOPICS,
    TOPIC_ACCESS,
    TOPIC_AUDIT,
    TOPIC_CONSENT,
    TOPIC_DLQ,
    TOPIC_NOTIFY,
    TOPIC_RECORDS,
)

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"  # creates topics and ACLs; a super user, as the brokers' own principal is
BROKER = "broker"
CREDENTIALS_DIR = "CARETRAIL_KAFKA_CREDENTIALS_DIR"
SECRETS_FILE = "secrets.json"  # {principal: password} in the credentials directory

# Each service's own topics, and the topics its consumers read; every consumer may also
# write the DLQ (a message it cannot handle goes there as it came).
WRITES = {
    "records": (TOPIC_RECORDS, TOPIC_ACCESS),
    "consent": (TOPIC_CONSENT,),
    "audit": (TOPIC_AUDIT,),
    "notify": (TOPIC_NOTIFY,),
}
READS = {
    "records": (TOPIC_CONSENT, TOPIC_RECORDS),  # its own record.* too: reminders follow them
    "consent": (TOPIC_RECORDS,),
    "audit": FACT_TOPICS,
    "notify": (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT),
}
SERVICES = tuple(WRITES)


def relay_transactions(service: str) -> str:
    """The prefix of the Kafka transactional ids of `service`'s relays, which only `service`
    may use: another principal could otherwise fence its relay by taking its id."""
    return f"caretrail-relay-{service}-"


def client_options() -> dict[str, Any]:
    """The security options of this process's Kafka clients (none on a PLAINTEXT broker)."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return {}
    username = os.environ.get("KAFKA_SASL_USERNAME", "")
    options: dict[str, Any] = {
        "security_protocol": protocol,
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": username,
        "sasl_plain_password": os.environ.get("KAFKA_SASL_PASSWORD")
        or _password_from_file(username)
        or "",
    }
    if protocol == "SASL_SSL":
        options["ssl_cafile"] = os.environ.get("KAFKA_SSL_CAFILE") or None
        options["ssl_check_hostname"] = True
    return options


def password_variable(service: str) -> str:
    return f"CARETRAIL_{service.upper()}_KAFKA_PASSWORD"


def _password_from_file(principal: str) -> str | None:
    """`principal`'s password in the credentials directory, if one is configured. A directory
    named without its secrets file is an error, not an anonymous client."""
    directory = os.environ.get(CREDENTIALS_DIR)
    if not directory or not principal:
        return None
    passwords = json.loads((Path(directory) / SECRETS_FILE).read_text())
    password = passwords.get(principal)
    return str(password) if password else None


def act_as(service: str) -> None:
    """Make this process's Kafka clients the service's own principal, when its password is
    configured, in its variable or else in the credentials directory (otherwise they stay
    whoever the environment names)."""
    password = os.environ.get(password_variable(service)) or _password_from_file(service)
    if password:
        os.environ["KAFKA_SASL_USERNAME"] = service
        os.environ["KAFKA_SASL_PASSWORD"] = password


def acls_of(service: str) -> list[ACL]:
    """What `service`'s principal may do: write its topics (and the DLQ), read what it
    consumes, in consumer groups named after it, publish in its relays' transactions. (Kafka
    lets whoever may read or write a resource also describe it.)"""
    principal = f"User:{service}"

    def allow(operation: ACLOperation, kind: ResourceType, name: str) -> ACL:
        pattern = (
            ACLResourcePatternType.LITERAL
            if kind == ResourceType.TOPIC
            else ACLResourcePatternType.PREFIXED
        )
        return ACL(
            principal, "*", operation, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern)
        )

    readable = dict.fromkeys((*READS[service], *WRITES[service]))
    return [
        *(allow(ACLOperation.WRITE, ResourceType.TOPIC, t) for t in (*WRITES[service], TOPIC_DLQ)),
        # Its own topics too: a relay settles a batch left in doubt by reading it back.
        *(allow(ACLOperation.READ, ResourceType.TOPIC, t) for t in readable),
        allow(ACLOperation.READ, ResourceType.GROUP, service),
        allow(ACLOperation.WRITE, ResourceType.TRANSACTIONAL_ID, relay_transactions(service)),
    ]
