"""deploy/nginx: one `/fhir` base for records, consent and audit, and one CapabilityStatement.

The template is rendered as the official nginx image renders it (envsubst of the variables
docker-compose.yml sets), then run by the machine's nginx in front of three stub services that
say who answered; no Docker engine runs here. Without an nginx binary the routing test is
skipped (`apt-get install nginx-light`); the CapabilityStatement test always runs.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from caretrail.docs import gateway_capability_statement, served
from shared.events import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]
NGINX = ROOT / "deploy" / "nginx"
FHIR_SERVICES = ("records", "consent", "audit")


def test_the_gateway_capability_statement_is_valid_r4_and_names_every_type_once():
    committed = json.loads((NGINX / "metadata.json").read_text())

    statement = CapabilityStatement.model_validate(committed)

    assert committed == gateway_capability_statement()
    types = [r.type for r in statement.rest[0].resource]
    assert sorted(types) == sorted([*CATEGORIES, "Consent", "AuditEvent"])
    assert statement.rest[0].security.service[0].coding[0].code == "SMART-on-FHIR"
    assert statement.implementation.url is None  # served wherever the gateway is


def test_without_the_gateway_records_metadata_names_where_consent_and_auditevent_live():
    documentation = served("records", "/fhir/metadata")["rest"][0]["documentation"]
    assert "Consent is served at http://127.0.0.1:8002/fhir" in documentation
    assert "AuditEvent at http://127.0.0.1:8003/fhir" in documentation


def test_the_compose_gateway_is_the_official_image_with_the_template_and_statement():
    gateway = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["fhir-gateway"]
    assert gateway["image"].startswith("nginx:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    assert mounts["/etc/nginx/templates"] == "./deploy/nginx/templates"
    metadata = gateway["environment"]["CARETRAIL_GATEWAY_METADATA"]
    assert mounts[metadata] == "./deploy/nginx/metadata.json"
    for service in FHIR_SERVICES:
        assert gateway["depends_on"][f"{service}-web"]["condition"] == "service_healthy"


class _Stub(BaseHTTPRequestHandler):
    """An upstream that answers which service it is, the path and the Host it was sent."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps(
            {"service": self.server.name, "path": self.path, "host": self.headers["Host"]}  # type: ignore[attr-defined]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    if shutil.which("nginx") is None:
        pytest.skip("no nginx binary here (apt-get install nginx-light)")
    stubs = []
    for name in FHIR_SERVICES:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stubs.append(server)
    port = _free_port()
    variables = {
        "CARETRAIL_GATEWAY_PORT": f"127.0.0.1:{port}",
        "CARETRAIL_GATEWAY_METADATA": str(NGINX / "metadata.json"),
        **{
            f"CARETRAIL_{name.upper()}_UPSTREAM": f"127.0.0.1:{server.server_address[1]}"
            for name, server in zip(FHIR_SERVICES, stubs, strict=True)
        },
    }
    template = (NGINX / "templates" / "fhir-gateway.conf.template").read_text()
    # envsubst as the image runs it: only the variables that are set, `$host` and such stay.
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m[1], m[0]), template)
    (tmp_path / "fhir-gateway.conf").write_text(rendered)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off; master_process off; pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy; include {tmp_path}/fhir-gateway.conf; }}\n"
    )
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen(["nginx", "-c", str(main), "-p", str(tmp_path)])
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield base
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for server in stubs:
            server.shutdown()


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read()


def test_one_base_routes_each_resource_to_its_service_keeping_path_query_and_host(gateway):
    def answered(path: str) -> tuple[str, str]:
        body = json.loads(_get(gateway + path)[1])
        assert body["host"] == gateway.split("/")[2]  # links the service writes point here
        return body["service"], body["path"]

    assert answered("/Consent?patient=Patient/p-1&status=active") == (
        "consent",
        "/fhir/Consent?patient=Patient/p-1&status=active",
    )
    assert answered("/Consent/c-1") == ("consent", "/fhir/Consent/c-1")
    assert answered("/AuditEvent?date=ge2026-01-01") == (
        "audit",
        "/fhir/AuditEvent?date=ge2026-01-01",
    )
    assert answered("/Observation?code=4548-4") == ("records", "/fhir/Observation?code=4548-4")
    assert answered("/Patient/p-1/$everything") == ("records", "/fhir/Patient/p-1/$everything")
    assert answered("/ConsentDirective") == ("records", "/fhir/ConsentDirective")
    assert answered("/.well-known/smart-configuration")[0] == "records"


def test_the_base_metadata_is_the_merged_capability_statement(gateway):
    content_type, body = _get(gateway + "/metadata")

    assert content_type.startswith("application/fhir+json")
    assert body == (NGINX / "metadata.json").read_bytes()
