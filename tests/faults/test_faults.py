"""Faults under a steady mixed load, each followed by a reconcile: no acknowledged fact lost,
none duplicated on the Kafka log, every one applied once downstream, no group left lagging."""

from __future__ import annotations

import signal
import threading
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from caretrail.system import SERVICES
from shared.events import TOPIC_ACCESS
from shared.kafka_access import client_options
from tests.faults.conftest import Faults

STEADY_SECONDS = 3.0  # load before a fault, so that it strikes work in flight
SESSION_TIMEOUT_SECONDS = 10  # the consumers' session.timeout.ms (shared/broker.py)


def assert_reconciled(result) -> None:
    assert result.answered > 0, "the load got no request answered"
    assert result.problems() == [], result


def test_fact_topics_keep_three_replicas_and_take_a_write_once_two_have_it(faults: Faults):
    admin = KafkaAdminClient(
        bootstrap_servers=faults.cluster.bootstrap.split(","), **client_options()
    )
    try:
        (topic,) = admin.describe_topics([TOPIC_ACCESS])
        assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {3}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC_ACCESS)])
    finally:
        admin.close()
    assert "min.insync.replicas" in str(configs) and "'2'" in str(configs), configs


def test_killing_the_partition_leader_loses_and_doubles_no_fact(faults: Faults):
    with faults.load("leader") as load:
        time.sleep(STEADY_SECONDS)
        leader = faults.cluster.leader_of(TOPIC_ACCESS, 0)
        faults.cluster.kill(leader)
        killed_at = time.monotonic()
        time.sleep(6)
        answered_while_down = load.answered_since(killed_at, "read")
        faults.cluster.restart(leader)
        healed_at = time.monotonic()
        time.sleep(2)
    assert answered_while_down > 0, "reads stopped answering while one broker was down"
    assert_reconciled(faults.reconcile("broker: kill the leader, restart", load, healed_at))


def test_with_two_brokers_down_facts_wait_in_the_outbox_while_reads_still_answer(faults: Faults):
    cluster = faults.cluster
    with faults.load("two-down") as load:
        time.sleep(STEADY_SECONDS)
        first = cluster.leader_of(TOPIC_ACCESS, 0)
        cluster.kill(first)
        time.sleep(2)
        second = next(n for n, pid in cluster.running().items() if pid and n != first)
        cluster.kill(second)
        down_at = time.monotonic()
        time.sleep(6)
        answered_while_down = load.answered_since(down_at, "read")
        waiting = faults.pending_facts("records")
        cluster.restart(first, second)
        healed_at = time.monotonic()
        time.sleep(2)
    assert answered_while_down > 0, "reads stopped answering while two brokers were down"
    assert waiting > 0, "with one broker of three, facts should wait in the outbox"
    assert_reconciled(faults.reconcile("broker: kill 2 of 3, restart", load, healed_at))


def test_an_immediate_postgresql_restart_loses_and_doubles_no_fact(faults: Faults):
    with faults.load("postgres") as load:
        time.sleep(STEADY_SECONDS)
        faults.postgres.restart_immediately()
        healed_at = time.monotonic()
        time.sleep(4)
        answered_after = load.answered_since(healed_at)
    assert answered_after > 0, "nothing answered after PostgreSQL came back"
    assert_reconciled(faults.reconcile("postgres: restart -m immediate", load, healed_at))


def test_killing_a_worker_of_each_kind_loses_and_doubles_no_fact(faults: Faults):
    system = faults.system
    with faults.load("workers") as load:
        time.sleep(STEADY_SECONDS)
        killed = []
        for service in SERVICES:
            killed.append(faults.relay_holder(service))  # so that its copy must take over
            system.kill(killed[-1])
            time.sleep(1.5)
        for name in killed:
            system.start_process(name)
        healed_at = time.monotonic()
        time.sleep(2)
    assert_reconciled(faults.reconcile("workers: SIGKILL one of each", load, healed_at))


def test_killing_a_gunicorn_worker_mid_request_loses_and_doubles_no_fact(faults: Faults):
    with faults.load("gunicorn") as load:
        time.sleep(STEADY_SECONDS)
        burst = [threading.Thread(target=load.read_once) for _ in range(6)]
        for thread in burst:
            thread.start()
        time.sleep(0.03)
        faults.kill_web_worker("records")
        for thread in burst:
            thread.join()
        healed_at = time.monotonic()
        time.sleep(3)
        answered_after = load.answered_since(healed_at, "read")
    assert answered_after > 0, "records stopped answering reads after one worker died"
    assert_reconciled(faults.reconcile("web: SIGKILL a gunicorn worker", load, healed_at))


def test_a_worker_stopped_past_its_session_timeout_commits_no_stale_work(faults: Faults):
    # The records relay's lease holder (a paused relay must not publish or mark stale work
    # when it resumes) and an audit worker (a paused consumer must not commit stale offsets).
    paused = (faults.relay_holder("records"), "audit-worker")
    with faults.load("sigstop") as load:
        time.sleep(STEADY_SECONDS)
        for name in paused:
            faults.signal(name, signal.SIGSTOP)
        time.sleep(SESSION_TIMEOUT_SECONDS + 2)
        for name in paused:
            faults.signal(name, signal.SIGCONT)
        healed_at = time.monotonic()
        time.sleep(3)
    assert_reconciled(faults.reconcile("workers: SIGSTOP 12 s, SIGCONT", load, healed_at))
