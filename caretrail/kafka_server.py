"""A local Apache Kafka broker in KRaft combined mode, run from Maven Central jars.

`fetch_jars` resolves deploy/kafka/pom.xml into var/kafka/libs once; `LocalBroker` formats
its storage once, starts `kafka.Kafka` with the machine's Java 17, waits until it answers and
creates caretrail's topics. Used by `caretrail kafka start|stop|status` and by the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from shared.broker import ensure_topics, reachable

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"
DEFAULT_LIBS = ROOT / "var" / "kafka" / "libs"
DEFAULT_DATA = ROOT / "var" / "kafka" / "data"


class BrokerError(RuntimeError):
    pass


def fetch_jars(libs: Path = DEFAULT_LIBS) -> bool:
    """Download the broker's jars with Maven unless present; answer whether it downloaded."""
    if any(libs.glob("kafka_2.13-*.jar")) and any(libs.glob("kafka-tools-*.jar")):
        return False
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka jars")
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    return True


def _is_broker(pid: int, properties: Path) -> bool:
    """Whether `pid` is alive (not a zombie) and runs kafka.Kafka with `properties`."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # ours (a test, `caretrail up` of old): reap it
        except ChildProcessError:
            pass
        return False
    return b"kafka.Kafka" in arguments and str(properties).encode() in arguments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalBroker:
    data_dir: Path = DEFAULT_DATA
    port: int = 9092
    controller_port: int | None = None
    libs: Path = DEFAULT_LIBS
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _properties(self) -> Path:
        controller = self.controller_port or self.port + 1
        path = self.data_dir / "server.properties"
        path.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir / 'logs'}",
                    "num.partitions=6",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    # Relays commit a transaction per batch; 50 partitions (the default) only
                    # slow a local broker's start.
                    "transaction.state.log.num.partitions=6",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.ms=-1",
                    "",
                ]
            )
        )
        return path

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]

    def running_pid(self) -> int | None:
        """The pid of this broker if it runs. A pid file can outlive its broker: the pid may be
        a zombie (a killed broker its parent has not reaped) or, reused, another process."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker(pid, self.data_dir / "server.properties") else None

    def _prepare(self) -> Path:
        """The jars, the configuration and (the first time) the formatted storage."""
        fetch_jars(self.libs)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_taken_ports()
        props = self._properties()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    str(uuid.uuid4()),
                    "-c",
                    str(props),
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        return props

    def run(self) -> None:
        """Become the broker, in the foreground (for a supervisor: caretrail/supervision.py)."""
        if self.running_pid() is not None:
            raise BrokerError(f"a broker already runs with {self.data_dir}")
        command = self._java("kafka.Kafka", str(self._prepare()))
        self.pid_file.write_text(str(os.getpid()))  # exec keeps the pid
        os.execv(command[0], command)

    def start(self, timeout_seconds: float = 60.0) -> None:
        """Start the broker (formatting its storage the first time) and create the topics."""
        if self.running_pid() is None:
            props = self._prepare()
            with open(self.log_file, "ab") as log:
                process = subprocess.Popen(
                    self._java("kafka.Kafka", str(props)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.pid_file.write_text(str(process.pid))
        self._wait_until_up(timeout_seconds)
        ensure_topics(self.bootstrap)
        self._wait_for_group_coordinator(timeout_seconds)

    def _refuse_taken_ports(self) -> None:
        """Another process answering on our ports would pass for this broker once started."""
        for port in (self.port, self.controller_port or self.port + 1):
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise BrokerError(f"port {port} is taken by another process")

    def _wait_for_group_coordinator(self, timeout_seconds: float) -> None:
        """Ready means consumer groups work: the first lookup creates __consumer_offsets."""
        admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap])
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                try:
                    admin.list_group_offsets("caretrail-readiness-probe")
                    return
                except KafkaError as err:
                    if not getattr(err, "retriable", False) or time.monotonic() > deadline:
                        raise BrokerError(f"no group coordinator: {err}") from err
                    time.sleep(0.3)
        finally:
            admin.close()

    def _wait_until_up(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                raise BrokerError(f"the broker exited; see {self.log_file}")
            if reachable(self.bootstrap, timeout_seconds=1.0):
                return
            time.sleep(0.3)
        raise BrokerError(f"the broker did not answer in {timeout_seconds}s; see {self.log_file}")

    def stop(self, timeout_seconds: float = 30.0) -> bool:
        """Stop the broker gracefully (SIGTERM, then SIGKILL); answer whether one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # Reap it if it is our child (tests); otherwise it just disappears.
                os.waitpid(pid, os.WNOHANG)
            except (ProcessLookupError, ChildProcessError):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
