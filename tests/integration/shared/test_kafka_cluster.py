"""How `caretrail kafka start --nodes 3` lays its cluster out (the fault suite runs one)."""

from __future__ import annotations

from caretrail.kafka_cluster import KafkaCluster


def test_three_nodes_each_a_voter_on_ports_two_apart_with_three_replicas(tmp_path):
    cluster = KafkaCluster(tmp_path, base_port=9092)
    nodes = cluster.brokers
    assert [(n.node_id, n.port, n.controller_port) for n in nodes.values()] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert {n.quorum_voters for n in nodes.values()} == {voters}
    assert {n.replicas for n in nodes.values()} == {3}
    assert [n.data_dir for n in nodes.values()] == [tmp_path / f"node-{i}" for i in (1, 2, 3)]
    assert cluster.bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"


def test_a_cluster_started_again_from_its_directory_keeps_its_id(tmp_path):
    first = KafkaCluster(tmp_path, base_port=9092)
    again = KafkaCluster(tmp_path, base_port=9092)
    ids = {n.cluster_id for c in (first, again) for n in c.brokers.values()}
    assert len(ids) == 1  # a node formatted under another id could not rejoin its quorum


def test_each_node_writes_properties_for_a_quorum_of_three_and_two_in_sync(tmp_path):
    node = KafkaCluster(tmp_path, base_port=9092).brokers[2]
    node.data_dir.mkdir(parents=True)
    props = dict(line.split("=", 1) for line in node._properties().read_text().splitlines() if line)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == node.quorum_voters
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
