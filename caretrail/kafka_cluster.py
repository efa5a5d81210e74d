"""A local Kafka cluster of 3 KRaft nodes (each broker and controller), from the same jars as
the single broker.

Node n listens on `base_port + 2(n-1)` for clients and the next port for the controller quorum,
keeps its data under `data_dir/node-n`, and all share one cluster id (kept in
`data_dir/cluster.id`, so a restarted node rejoins its cluster). Topics get 3 replicas and
`min.insync.replicas=2`: any one node may die without losing or refusing a write.
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from caretrail.kafka_server import (
    DEFAULT_LIBS,
    BrokerError,
    LocalBroker,
    free_port,
    wait_for_group_coordinator,
)
from shared.broker import ensure_topics
from shared.kafka_access import client_options

REPLICAS = 3


@dataclass
class KafkaCluster:
    data_dir: Path
    nodes: int = REPLICAS
    base_port: int | None = None  # None: free ports (tests)
    libs: Path = DEFAULT_LIBS
    heap: str = "320m"
    java_options: tuple[str, ...] = ()
    brokers: dict[int, LocalBroker] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        ports = {
            n: (
                (self.base_port + 2 * (n - 1), self.base_port + 2 * (n - 1) + 1)
                if self.base_port
                else (free_port(), free_port())
            )
            for n in range(1, self.nodes + 1)
        }
        voters = ",".join(f"{n}@127.0.0.1:{controller}" for n, (_, controller) in ports.items())
        for n, (port, controller) in ports.items():
            self.brokers[n] = LocalBroker(
                data_dir=self.data_dir / f"node-{n}",
                port=port,
                controller_port=controller,
                libs=self.libs,
                heap=self.heap,
                node_id=n,
                quorum_voters=voters,
                cluster_id=self._cluster_id(),
                replicas=min(REPLICAS, self.nodes),
                java_options=self.java_options,
            )

    def _cluster_id(self) -> str:
        path = self.data_dir / "cluster.id"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(str(uuid.uuid4()))
        return path.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def start(self, timeout_seconds: float = 90.0) -> None:
        """Start every node, wait until each answers, then create the replicated topics."""
        for broker in self.brokers.values():
            broker.launch()
        for broker in self.brokers.values():
            broker.wait_until_up(timeout_seconds)
        ensure_topics(self.bootstrap, replication_factor=min(REPLICAS, self.nodes))
        self.brokers[1].credentials.grant_service_acls(self.bootstrap)
        wait_for_group_coordinator(self.bootstrap, timeout_seconds)

    def running(self) -> dict[int, int | None]:
        """Each node's pid, or None when it is not running."""
        return {n: b.running_pid() for n, b in self.brokers.items()}

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        self.brokers[node].kill(sig)

    def restart(self, *nodes: int, timeout_seconds: float = 120.0) -> None:
        """Start nodes that were killed again, all at once, and wait until each answers."""
        for node in nodes:
            self.brokers[node].launch()
        for node in nodes:
            self.brokers[node].wait_until_up(timeout_seconds)

    def leader_of(self, topic: str, partition: int = 0, timeout_seconds: float = 30.0) -> int:
        """The node that leads `topic`'s `partition` now (-1: none while it is elected)."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                return self._describe_leader(topic, partition)
            except KafkaError:
                # The client may learn of a node (or lose one) while asking: ask again.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def _describe_leader(self, topic: str, partition: int) -> int:
        alive = ",".join(b.bootstrap for b in self.brokers.values() if b.running_pid())
        admin = KafkaAdminClient(bootstrap_servers=alive.split(","), **client_options())
        try:
            for described in admin.describe_topics([topic]):
                for p in described["partitions"]:
                    if p["partition_index"] == partition:
                        return int(p["leader_id"])
        finally:
            admin.close()
        raise BrokerError(f"{topic} has no partition {partition}")

    def wait_until_replicated(self, topics: tuple[str, ...], timeout_seconds: float = 60.0) -> None:
        """Wait until every partition of `topics` has all its replicas in sync again."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), **client_options())
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                described = admin.describe_topics(list(topics))
                partitions = [p for t in described for p in t["partitions"]]
                if all(len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in partitions):
                    return
                if time.monotonic() > deadline:
                    raise BrokerError(f"replicas not in sync after {timeout_seconds}s")
                time.sleep(0.3)
        finally:
            admin.close()

    def stop(self, timeout_seconds: float = 30.0) -> bool:
        """Stop every node; answer whether any was running."""
        stopped = [b.stop(timeout_seconds) for b in self.brokers.values()]
        return any(stopped)
