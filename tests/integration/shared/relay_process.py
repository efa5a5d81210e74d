"""A leased outbox relay in a process of its own, for the takeover and fencing tests.

Usage: relay_process.py DB_URL BOOTSTRAP HOLDER LEASE_SECONDS [--pause-at flush|commit KEY]
With --pause-at it stops itself (SIGSTOP) in the first batch with a message keyed KEY: once the
broker acknowledged the batch, before marking it sent (flush), or once it is marked sent, before
its Kafka transaction commits (commit). SIGCONT resumes it where it stopped.
"""

import logging
import os
import signal
import sys
import threading
from typing import Any

from shared import relay_lease
from shared.relay_lease import LeasedRelay
from tests.integration.shared import tiny_service as tiny


class _PausingProducer:
    """The real producer, stopping its own process at one point of one batch."""

    def __init__(self, producer: Any, at: str, key: bytes) -> None:
        self._producer = producer
        self._at = at
        self._key = key
        self._armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def send(self, topic: str, **message: Any) -> Any:
        self._armed = self._armed or message.get("key") == self._key
        return self._producer.send(topic, **message)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)
        self._pause_at("flush")

    def commit_transaction(self) -> None:
        self._pause_at("commit")
        self._producer.commit_transaction()

    def _pause_at(self, point: str) -> None:
        if self._armed and self._at == point:
            self._armed = False
            os.kill(os.getpid(), signal.SIGSTOP)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    url, bootstrap, holder, lease_seconds = sys.argv[1:5]
    if "--pause-at" in sys.argv:
        at, key = sys.argv[sys.argv.index("--pause-at") + 1 :][:2]
        make_producer = relay_lease.make_producer

        def pausing_producer(*args: Any, **kwargs: Any) -> Any:
            return _PausingProducer(make_producer(*args, **kwargs), at, key.encode())

        relay_lease.make_producer = pausing_producer  # type: ignore[assignment]

    engine, _sessions = tiny.setup(url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    LeasedRelay(
        engine, bootstrap, service="records", holder=holder, lease_seconds=float(lease_seconds)
    ).run(stop)


if __name__ == "__main__":
    main()
