"""The local broker's credentials: a CA and the broker's TLS certificate, one SCRAM password
per principal (the brokers, the admin, each service), and the ACLs of `shared.kafka_access`.

Made once per checkout under var/kafka/auth (readable by its owner only) and shared by every
local broker and cluster node it starts (`caretrail up`, `caretrail kafka start`, the tests,
the bench), so a process that knows the directory can be any principal it names. SCRAM
credentials are written into the storage when it is formatted (`--add-scram`); the brokers
talk to their controllers with SASL/PLAIN on loopback (KRaft controllers cannot check SCRAM
before they have read the metadata log that holds the SCRAM credentials).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from kafka import KafkaAdminClient

from shared.fact_signing import write_once
from shared.kafka_access import ADMIN, BROKER, MECHANISM, SERVICES, acls_of, password_variable

ROOT = Path(__file__).resolve().parent.parent
PRINCIPALS = (BROKER, ADMIN, *SERVICES)
# Names the broker's certificate answers to: loopback here, the compose services there.
HOSTS = ("localhost", "kafka", "kafka-2", "kafka-3")


@dataclass(frozen=True)
class LocalCredentials:
    directory: Path

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
        return self.directory / "secrets.json"

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
            ca_pem, keystore_pem = _certificates(self.secret("keystore"))
            write_once(self.ca_file, ca_pem)
            write_once(self.keystore_file, keystore_pem)
        return self

    def secret(self, name: str) -> str:
        return str(json.loads(self._secrets_file.read_text())[name])

    def server_properties(self, port: int, controller_port: int) -> list[str]:
        """The broker's listeners and security, as server.properties lines."""
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
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
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
        """Give each service's principal what `shared.kafka_access` says it may do (again
        harmlessly: an ACL that exists is not doubled)."""
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_plain_username=ADMIN,
            sasl_plain_password=self.secret(ADMIN),
            ssl_cafile=str(self.ca_file),
        )
        try:
            result = admin.create_acls([acl for s in SERVICES for acl in acls_of(s)])
            if result["failed"]:
                raise RuntimeError(f"ACLs not created: {result['failed']}")
        finally:
            admin.close()


def _certificates(key_password: str) -> tuple[bytes, bytes]:
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
    names = [x509.DNSName(h) for h in HOSTS] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
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
