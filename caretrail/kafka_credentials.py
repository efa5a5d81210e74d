"""The local broker's credentials: a CA and the broker's TLS certificate, one SCRAM password
per principal (the brokers, the admin, each service), and the ACLs of `shared.kafka_access`.

Made once per checkout under var/kafka/auth (readable by its owner only) and shared by every
local broker and cluster node it starts (`caretrail up`, `caretrail kafka start`, the tests,
the bench), so a process that knows the directory can be any principal it names. SCRAM
credentials are written into the storage when it is formatted (`--add-scram`); the brokers
talk to their controllers with SASL/PLAIN on loopback (KRaft controllers cannot check SCRAM
before they have read the metadata log that holds the SCRAM credentials).

`caretrail kafka credentials --dir DIR` makes the same in DIR for brokers in containers
(docker-compose.yml: the `keys` volume's kafka/), with the files their entrypoint script
(deploy/docker/kafka-node.sh) reads without Python: a server.properties fragment, the
`--add-scram` arguments one a line and a client configuration for the healthcheck.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from kafka import KafkaAdminClient

from shared.fact_signing import write_once
from shared.kafka_access import (
    ADMIN,
    BROKER,
    MECHANISM,
    SECRETS_FILE,
    SERVICES,
    acls_of,
    client_options,
    password_variable,
)

ROOT = Path(__file__).resolve().parent.parent
PRINCIPALS = (BROKER, ADMIN, *SERVICES)
# Names the broker's certificate answers to: loopback here, the compose services there.
HOSTS = ("localhost", "kafka", "kafka-2", "kafka-3")
# What a broker container reads (deploy/docker/kafka-node.sh), beside ca.pem and broker.p12.
CONTAINER_PROPERTIES = "broker.properties"
CONTAINER_SCRAM_ARGUMENTS = "scram-arguments"
CONTAINER_CLIENT_PROPERTIES = "broker-client.properties"


@dataclass(frozen=True)
class LocalCredentials:
    directory: Path
    hosts: tuple[str, ...] = HOSTS  # the names the broker's certificate answers to

    @classmethod
    def of_this_checkout(cls) -> LocalCredentials:
        return cls(ROOT / "var" / "kafka" / "auth")

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore_file(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def _secrets_file(self) -> Path:
        return self.directory / SECRETS_FILE

    def exists(self) -> bool:
        return self.keystore_file.exists()

    def ensure(self) -> LocalCredentials:
        """Make what is missing (a first start); never replace what exists."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if not self._secrets_file.exists():
            passwords = {p: secrets.token_urlsafe(24) for p in (*PRINCIPALS, "keystore")}
            write_once(self._secrets_file, json.dumps(passwords).encode())
        if not self.keystore_file.exists():
            ca_pem, keystore_pem = _certificates(self.secret("keystore"), self.hosts)
            write_once(self.ca_file, ca_pem)
            write_once(self.keystore_file, keystore_pem)
        return self

    def secret(self, name: str) -> str:
        return str(json.loads(self._secrets_file.read_text())[name])

    def server_properties(self, port: int, controller_port: int) -> list[str]:
        """The broker's listeners and security, as server.properties lines."""
        return [
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            *self._security_properties(controller_protocol="SASL_PLAINTEXT"),
        ]

    def _security_properties(self, controller_protocol: str) -> list[str]:
        broker, broker_password = BROKER, self.secret(BROKER)
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{broker}" password="{broker_password}" user_{broker}="{broker_password}";'
        )
        scram = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{broker}" password="{broker_password}";'
        )
        return [
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map=CONTROLLER:{controller_protocol},SASL_SSL:SASL_SSL",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore_file}",
            f"ssl.keystore.password={self.secret('keystore')}",
            f"ssl.key.password={self.secret('keystore')}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{BROKER};User:{ADMIN}",
            "allow.everyone.if.no.acl.found=false",
        ]

    def format_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create every principal's SCRAM credential."""
        return [
            argument
            for principal in PRINCIPALS
            for argument in (
                "--add-scram",
                f"{MECHANISM}=[name={principal},password={self.secret(principal)}]",
            )
        ]

    def provision_for_containers(self) -> LocalCredentials:
        """Make what is missing, and the files a broker container reads with a POSIX shell
        (deploy/docker/kafka-node.sh), naming the other files by this directory's path: a
        container mounts it where it was made. Never replaces what exists.

        The broker image runs as another user (apache/kafka: appuser, uid 1000) than the one
        that makes these (caretrail, uid 10001), and neither may change a file's owner: the
        directory may be crossed but not listed, and only the files the broker needs are
        readable by all; secrets.json stays its owner's. Those files hold every principal's
        password (the broker writes their SCRAM credentials when it formats its storage), so
        mount this directory only where a broker or a caretrail process runs."""
        self.ensure()
        readable = 0o644
        # Between brokers the controller listener crosses a network: PLAIN goes over TLS.
        fragment = self._security_properties(controller_protocol="SASL_SSL")
        write_once(self.directory / CONTAINER_PROPERTIES, _lines(fragment), mode=readable)
        arguments = self.format_arguments()
        write_once(self.directory / CONTAINER_SCRAM_ARGUMENTS, _lines(arguments), mode=readable)
        client = [
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={MECHANISM}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER}" password="{self.secret(BROKER)}";',
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
        ]
        write_once(self.directory / CONTAINER_CLIENT_PROPERTIES, _lines(client), mode=readable)
        for path in (self.ca_file, self.keystore_file):
            os.chmod(path, readable)
        os.chmod(self.directory, 0o711)
        return self

    def client_env(self, principal: str = ADMIN) -> dict[str, str]:
        """The environment of a process whose Kafka clients are `principal`, plus each
        service's password, so that `caretrail web|worker <service>` can be that service."""
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CAFILE": str(self.ca_file),
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": self.secret(principal),
            **{password_variable(s): self.secret(s) for s in SERVICES},
        }

    def grant_service_acls(self, bootstrap: str) -> None:
        """Give each service's principal what `shared.kafka_access` says it may do, as this
        directory's admin."""
        grant_service_acls(
            bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_plain_username=ADMIN,
            sasl_plain_password=self.secret(ADMIN),
            ssl_cafile=str(self.ca_file),
        )


def grant_service_acls(bootstrap: str, **client: Any) -> None:
    """Give each service's principal what `shared.kafka_access` says it may do (again
    harmlessly: an ACL that exists is not doubled), as the admin that `client` (the admin
    client's options; this process's by default) authenticates."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **(client or client_options()))
    try:
        result = admin.create_acls([acl for s in SERVICES for acl in acls_of(s)])
        if result["failed"]:
            raise RuntimeError(f"ACLs not created: {result['failed']}")
    finally:
        admin.close()


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _certificates(key_password: str, hosts: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A CA's certificate (PEM), and the broker's key with its certificate chain as a PKCS#12
    keystore (Java reads those whole; an encrypted PKCS#8 PEM key needs a cipher it lacks)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caretrail local Kafka CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caretrail kafka")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    keystore = pkcs12.serialize_key_and_certificates(
        b"kafka",
        key,
        certificate,
        [ca],
        serialization.BestAvailableEncryption(key_password.encode()),
    )
    return ca.public_bytes(serialization.Encoding.PEM), keystore
