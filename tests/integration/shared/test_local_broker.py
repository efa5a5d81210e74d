"""`caretrail kafka start` does not take another process on its port for the broker it started."""

from __future__ import annotations

import socket

import pytest

from caretrail.kafka_server import BrokerError, LocalBroker, free_port


def test_a_broker_whose_port_another_process_holds_is_not_started(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        broker = LocalBroker(data_dir=tmp_path, port=taken, controller_port=free_port())

        with pytest.raises(BrokerError, match=f"port {taken} is taken"):
            broker.start(timeout_seconds=5)
        assert broker.running_pid() is None
