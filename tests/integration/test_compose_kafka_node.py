"""The compose broker's entrypoint (deploy/docker/kafka-node.sh), run for real without Docker.

A temp directory stands in for the apache/kafka image's /opt/kafka: its bin/ scripts run the
same Kafka classes from the local jars (var/kafka/libs). The credentials are made as the
compose `keys` service makes them, the topics and ACLs as its `kafka-topics` step does (the
admin reading its password from the credentials directory), and then `records` may write its
topic and not consent's. The healthcheck is docker-compose.yml's own command.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from caretrail.cli import main as caretrail
from caretrail.kafka_server import DEFAULT_LIBS, LOG4J_CONFIG, fetch_jars, free_port
from shared.broker import reachable
from shared.events import TOPIC_CONSENT, TOPIC_RECORDS
from shared.kafka_access import CREDENTIALS_DIR, SERVICES, act_as, password_variable
from tests.support.kafka_tap import write_one

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker" / "kafka-node.sh"

pytestmark = pytest.mark.kafka

# What the image's bin/ scripts run (each through kafka-run-class.sh), with a JVM for a
# short-lived broker on a busy machine (caretrail/kafka_server.py's QUICK_START_JAVA).
MAIN_CLASSES = {
    "kafka-storage.sh": ("-Xmx256m", "kafka.tools.StorageTool"),
    "kafka-server-start.sh": ("-Xms512m -Xmx512m -XX:+UseG1GC", "kafka.Kafka"),
    "kafka-broker-api-versions.sh": ("-Xmx256m", "org.apache.kafka.tools.BrokerApiVersionsCommand"),
}


def fake_distribution(dist: Path) -> Path:
    fetch_jars(DEFAULT_LIBS)
    (dist / "bin").mkdir(parents=True)
    (dist / "config").mkdir()
    for script, (options, main_class) in MAIN_CLASSES.items():
        path = dist / "bin" / script
        path.write_text(
            "#!/bin/sh\n"
            f"exec java {options} -XX:TieredStopAtLevel=1 -Djava.awt.headless=true "
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG} -cp '{DEFAULT_LIBS}/*' "
            f'{main_class} "$@"\n'
        )
        path.chmod(0o755)
    return dist


@pytest.fixture(scope="module")
def identity() -> Iterator[pytest.MonkeyPatch]:
    """Only what this module sets names this process's Kafka identity, restored after it (set
    first so that each variable `act_as` sets is restored even when it was absent)."""
    names = ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", *map(password_variable, SERVICES))
    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            patch.setenv(name, "")
            patch.delenv(name)
        yield patch


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, identity: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, Path]]:
    """A node started by the script: its bootstrap, credentials and distribution."""
    tmp_path = tmp_path_factory.mktemp("compose-node")
    credentials = tmp_path / "keys" / "kafka"
    assert caretrail(["kafka", "credentials", "--dir", str(credentials)]) == 0
    dist = fake_distribution(tmp_path / "opt" / "kafka")
    port, controller_port = free_port(), free_port()
    env = {
        **os.environ,
        "CARETRAIL_KAFKA_DIST": str(dist),
        "CARETRAIL_KAFKA_CREDENTIALS_DIR": str(credentials),
        "CARETRAIL_KAFKA_DATA": str(tmp_path / "data"),
        "CARETRAIL_KAFKA_NODE_ID": "1",
        "CARETRAIL_KAFKA_HOST": "localhost",  # a name of the certificate that resolves here
        "CARETRAIL_KAFKA_BIND": "127.0.0.1",
        "CARETRAIL_KAFKA_PORT": str(port),
        "CARETRAIL_KAFKA_CONTROLLER_PORT": str(controller_port),
        "CARETRAIL_KAFKA_VOTERS": f"1@localhost:{controller_port}",
        "CARETRAIL_KAFKA_CLUSTER_ID": str(uuid.uuid4()),
    }
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["sh", str(SCRIPT)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bootstrap = f"localhost:{port}"
    # The admin, as the compose kafka-topics step is: its password from the credentials dir.
    identity.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    identity.setenv("KAFKA_SSL_CAFILE", str(credentials / "ca.pem"))
    identity.setenv(CREDENTIALS_DIR, str(credentials))
    identity.setenv("KAFKA_SASL_USERNAME", "admin")
    identity.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    try:
        deadline = time.monotonic() + 60
        while not reachable(bootstrap, timeout_seconds=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the node did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield bootstrap, credentials, dist
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # its data is thrown away
        process.wait(10)


def test_the_compose_node_authenticates_and_authorises_each_service(node, identity):
    bootstrap, credentials, dist = node
    assert caretrail(["kafka", "topics"]) == 0  # as admin: the topics and the services' ACLs

    act_as("records")  # its password from the credentials dir, as in its container
    deadline = time.monotonic() + 15
    while True:  # the ACLs just created reach the broker's authorizer in a moment
        try:
            write_one(bootstrap, TOPIC_RECORDS)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(TopicAuthorizationFailedError):
        write_one(bootstrap, TOPIC_CONSENT)


def healthcheck(dist: Path, bootstrap: str, client_config: Path) -> int:
    """docker-compose.yml's healthcheck of a node, run here."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["kafka"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = (
        command.replace("/opt/kafka", str(dist))
        .replace("/keys/kafka/broker-client.properties", str(client_config))
        .replace("localhost:9092", bootstrap)
    )
    return subprocess.run(["sh", "-c", command], timeout=60).returncode


def test_the_compose_healthcheck_authenticates(node, tmp_path):
    bootstrap, credentials, dist = node
    config = credentials / "broker-client.properties"
    assert healthcheck(dist, bootstrap, config) == 0

    wrong = tmp_path / "wrong.properties"
    wrong.write_text(re.sub(r'password="[^"]*"', 'password="wrong"', config.read_text()))
    assert healthcheck(dist, bootstrap, wrong) != 0
