"""docker-compose.yml and the Dockerfile, checked for structure (no Docker engine runs here)."""

import re
import stat
from pathlib import Path

import yaml

from caretrail.kafka_credentials import LocalCredentials
from services.records.sealing import DEVELOPMENT_MASTER_KEY
from shared.config import DEFAULT_PORTS, LOCAL_JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("records", "consent", "audit", "notify")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_every_process_of_the_design_is_a_compose_service():
    names = set(compose())
    assert {"kafka", "postgres", "migrate", "kafka-topics"} <= names
    for service in SERVICES:
        assert {f"{service}-web", f"{service}-worker"} <= names


def test_each_web_process_publishes_its_port_and_has_a_healthcheck():
    services = compose()
    for service in SERVICES:
        web = services[f"{service}-web"]
        port = DEFAULT_PORTS[service]
        assert web["ports"] == [f"{port}:{port}"]
        assert web["environment"][f"CARETRAIL_{service.upper()}_BIND"] == f"0.0.0.0:{port}"
        assert f"{port}/healthz" in " ".join(web["healthcheck"]["test"])


def test_each_service_has_its_own_postgres_database_and_the_broker():
    services = compose()
    init = (ROOT / "deploy/docker/postgres-init.sql").read_text()
    for service in SERVICES:
        for process in ("web", "worker"):
            env = services[f"{service}-{process}"]["environment"]
            url = env[f"CARETRAIL_{service.upper()}_DATABASE_URL"]
            assert url.startswith("postgresql://") and url.endswith(f"/caretrail_{service}")
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert env["KAFKA_SSL_CAFILE"] == "/keys/kafka/ca.pem"
            # Its own password, read there by `act_as(service)`; never one in this file.
            assert env["CARETRAIL_KAFKA_CREDENTIALS_DIR"] == "/keys/kafka"
            assert "KAFKA_SASL_USERNAME" not in env and "KAFKA_SASL_PASSWORD" not in env
        assert f"CREATE DATABASE caretrail_{service};" in init


def test_processes_start_only_after_the_broker_topics_and_migrations():
    services = compose()
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for service in SERVICES:
        for process in ("web", "worker"):
            depends = services[f"{service}-{process}"]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully"
            assert depends["kafka-topics"]["condition"] == "service_completed_successfully"


def test_the_compose_broker_runs_the_kafka_version_of_the_local_broker():
    pom = (ROOT / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    kafka = compose()["kafka"]
    assert kafka["image"] == f"apache/kafka:{version}"
    assert kafka["entrypoint"] == ["/bin/sh", "/opt/caretrail/kafka-node.sh"]
    script = (ROOT / "deploy/docker/kafka-node.sh").read_text()
    assert "process.roles=broker,controller" in script  # KRaft


def test_the_compose_brokers_start_authenticated_from_the_keys_volume():
    services = compose()
    for name in ("kafka", "kafka-2", "kafka-3"):
        node = services[name]
        assert node["depends_on"]["keys"]["condition"] == "service_completed_successfully"
        assert "keys:/keys:ro" in node["volumes"]
        assert "./deploy/docker/kafka-node.sh:/opt/caretrail/kafka-node.sh:ro" in node["volumes"]
        assert node["environment"]["CARETRAIL_KAFKA_CREDENTIALS_DIR"] == "/keys/kafka"
        health = " ".join(node["healthcheck"]["test"])
        assert "--command-config /keys/kafka/broker-client.properties" in health
        assert not any(key.startswith("KAFKA_") for key in node["environment"])  # no image config
    # The admin creates the topics and grants the ACLs, its password from the same directory.
    topics = services["kafka-topics"]["environment"]
    assert topics["KAFKA_SASL_USERNAME"] == "admin" and "KAFKA_SASL_PASSWORD" not in topics


def test_container_credentials_are_readable_by_the_broker_only_where_it_needs(tmp_path):
    made = LocalCredentials(tmp_path / "kafka").provision_for_containers()
    names = {"ca.pem", "broker.p12", "broker.properties", "scram-arguments"}
    names |= {"broker-client.properties"}
    for name in names:
        assert stat.S_IMODE((made.directory / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((made.directory / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(made.directory.stat().st_mode) == 0o711  # crossed, not listed
    fragment = (made.directory / "broker.properties").read_text()
    assert f"ssl.keystore.location={made.keystore_file}" in fragment  # absolute, as mounted
    assert "allow.everyone.if.no.acl.found=false" in fragment


def test_container_credentials_are_never_replaced(tmp_path):
    made = LocalCredentials(tmp_path / "kafka").provision_for_containers()
    before = {p.name: p.read_bytes() for p in made.directory.iterdir()}
    LocalCredentials(tmp_path / "kafka").provision_for_containers()
    assert {p.name: p.read_bytes() for p in made.directory.iterdir()} == before


def test_the_image_runs_as_a_non_root_user_and_the_command_picks_the_process():
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["caretrail"]' in dockerfile
    for service in SERVICES:
        assert compose()[f"{service}-worker"]["command"] == ["worker", service]


def test_compose_requires_its_secrets_and_publishes_none():
    text = (ROOT / "docker-compose.yml").read_text()
    assert LOCAL_JWT_SECRET not in text and DEVELOPMENT_MASTER_KEY not in text
    services = compose()
    for service in SERVICES:
        for process in ("web", "worker"):
            env = services[f"{service}-{process}"]["environment"]
            # `${VAR:?message}`: compose refuses to start while the variable is unset.
            for name in ("CARETRAIL_JWT_SECRET", "CARETRAIL_RECORDS_MASTER_KEY"):
                assert env[name].startswith("${" + name + ":?"), (service, process, name)
            assert env["CARETRAIL_FACT_KEYS_DIR"] == "/keys"
            depends = services[f"{service}-{process}"]["depends_on"]
            assert depends["keys"]["condition"] == "service_completed_successfully"
    keys = services["keys"]["entrypoint"][-1]
    assert keys == "caretrail keys generate && caretrail kafka credentials"
    assert services["keys"]["environment"]["CARETRAIL_KAFKA_CREDENTIALS_DIR"] == "/keys/kafka"


def test_the_cluster_profile_runs_three_kraft_nodes_with_three_replicas_and_two_in_sync():
    services = compose()
    nodes = [services[name] for name in ("kafka", "kafka-2", "kafka-3")]
    assert [n.get("profiles") for n in nodes] == [None, ["cluster"], ["cluster"]]
    assert [n["environment"]["CARETRAIL_KAFKA_NODE_ID"] for n in nodes] == [1, 2, 3]
    assert [n["environment"]["CARETRAIL_KAFKA_HOST"] for n in nodes] == [
        "kafka",
        "kafka-2",
        "kafka-3",
    ]
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/docker/cluster.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["CARETRAIL_KAFKA_VOTERS"] == "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert (env["CARETRAIL_KAFKA_REPLICAS"], env["CARETRAIL_KAFKA_MIN_ISR"]) == ("3", "2")
    for node in nodes:
        voters = node["environment"]["CARETRAIL_KAFKA_VOTERS"]
        assert voters == "${CARETRAIL_KAFKA_VOTERS:-1@kafka:9093}"
        assert node["environment"]["CARETRAIL_KAFKA_MIN_ISR"].startswith(
            "${CARETRAIL_KAFKA_MIN_ISR"
        )
    topics = services["kafka-topics"]["environment"]["CARETRAIL_KAFKA_REPLICATION_FACTOR"]
    assert topics == "${CARETRAIL_KAFKA_REPLICAS:-1}"
