#!/bin/sh
# One authenticated caretrail Kafka node (broker and KRaft controller) in the official
# apache/kafka image, instead of the image's own /etc/kafka/docker/run: that one configures
# the broker from KAFKA_* variables, and docker compose would then hold its passwords.
#
# Reads the credentials `caretrail kafka credentials` made (docker-compose.yml: the `keys`
# service, into the `keys` volume, mounted here read-only at the same path): the security
# part of server.properties (SASL/SCRAM-SHA-512 over TLS, PLAIN over TLS between controllers,
# StandardAuthorizer, nothing allowed without an ACL), and each principal's `--add-scram`
# argument, written into the storage when it is formatted (once: meta.properties exists after).
#
# POSIX sh (the image is Alpine: busybox sh, Java, no Python). Variables, with the defaults of
# the image and of docker-compose.yml; tests/integration/test_compose_kafka_node.py runs this
# script against the local Kafka jars with other values:
#   CARETRAIL_KAFKA_NODE_ID, CARETRAIL_KAFKA_HOST   this node's id and the name clients reach it by
#   CARETRAIL_KAFKA_VOTERS                           the controllers, 1@kafka:9093,2@kafka-2:9093,...
#   CARETRAIL_KAFKA_CLUSTER_ID                       the same on every node
#   CARETRAIL_KAFKA_REPLICAS, CARETRAIL_KAFKA_MIN_ISR  copies of internal topics, and in sync
#   CARETRAIL_KAFKA_CREDENTIALS_DIR  /keys/kafka     CARETRAIL_KAFKA_DATA  /var/lib/kafka/data
#   CARETRAIL_KAFKA_PORT 9092, CARETRAIL_KAFKA_CONTROLLER_PORT 9093, CARETRAIL_KAFKA_BIND (all)
#   CARETRAIL_KAFKA_DIST             /opt/kafka (the distribution: bin/, config/)
set -eu

dist=${CARETRAIL_KAFKA_DIST:-/opt/kafka}
credentials=${CARETRAIL_KAFKA_CREDENTIALS_DIR:-/keys/kafka}
data=${CARETRAIL_KAFKA_DATA:-/var/lib/kafka/data}
node=${CARETRAIL_KAFKA_NODE_ID:?the node id}
host=${CARETRAIL_KAFKA_HOST:?the name clients reach this node by}
voters=${CARETRAIL_KAFKA_VOTERS:?the controllers: 1@kafka:9093,...}
cluster=${CARETRAIL_KAFKA_CLUSTER_ID:?the cluster id}
port=${CARETRAIL_KAFKA_PORT:-9092}
controller_port=${CARETRAIL_KAFKA_CONTROLLER_PORT:-9093}
bind=${CARETRAIL_KAFKA_BIND:-}
replicas=${CARETRAIL_KAFKA_REPLICAS:-1}
min_isr=${CARETRAIL_KAFKA_MIN_ISR:-1}
properties=$dist/config/caretrail-server.properties

for file in broker.properties scram-arguments ca.pem broker.p12; do
    if [ ! -r "$credentials/$file" ]; then
        echo "kafka-node: cannot read $credentials/$file (made by: caretrail kafka credentials)" >&2
        exit 1
    fi
done

umask 077 # the properties hold the broker's passwords
mkdir -p "$data"
{
    echo "process.roles=broker,controller"
    echo "node.id=$node"
    echo "controller.quorum.voters=$voters"
    echo "listeners=SASL_SSL://$bind:$port,CONTROLLER://$bind:$controller_port"
    echo "advertised.listeners=SASL_SSL://$host:$port"
    echo "log.dirs=$data"
    echo "num.partitions=6"
    echo "default.replication.factor=$replicas"
    echo "min.insync.replicas=$min_isr"
    echo "offsets.topic.replication.factor=$replicas"
    echo "transaction.state.log.replication.factor=$replicas"
    echo "transaction.state.log.min.isr=$min_isr"
    echo "share.coordinator.state.topic.replication.factor=$replicas"
    echo "share.coordinator.state.topic.min.isr=$min_isr"
    echo "group.initial.rebalance.delay.ms=0"
    echo "auto.create.topics.enable=false"
    echo "log.retention.ms=-1"
    cat "$credentials/broker.properties"
} >"$properties"

if [ ! -f "$data/meta.properties" ]; then
    # The arguments, one a line, as words of their own (no shell quoting to undo).
    set --
    while IFS= read -r argument || [ -n "$argument" ]; do
        if [ -n "$argument" ]; then
            set -- "$@" "$argument"
        fi
    done <"$credentials/scram-arguments"
    echo "kafka-node: formatting $data for cluster $cluster, node $node"
    "$dist/bin/kafka-storage.sh" format -t "$cluster" -c "$properties" "$@"
fi

exec "$dist/bin/kafka-server-start.sh" "$properties"
