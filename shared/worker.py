"""A service's worker process: its consumer loop and its outbox relay, side by side.

Extra periodic jobs (expiry scheduler, checkpoint signer, delivery queue) run as more threads.
SIGTERM or SIGINT stops everything: the consumer finishes the message at hand and commits
its offsets; the relay finishes its batch.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from sqlalchemy import Engine

from shared.broker import log_ends, make_consumer, make_producer
from shared.config import Settings
from shared.db import session_factory
from shared.fact_signing import FactKeys, signing_key
from shared.inbox import ConsumerLoop, Handler, MembershipStuck
from shared.migrations import upgrade
from shared.outbox import OUTBOX
from shared.relay_lease import LeasedRelay
from shared.telemetry import setup_logging, setup_tracing

log = logging.getLogger(__name__)

Job = Callable[[threading.Event], None]


@dataclass
class Worker:
    settings: Settings
    engine: Engine
    consumer_group: str
    topics: Iterable[str]
    handlers: dict[str, Handler]
    outbox_table: str | None = OUTBOX
    jobs: dict[str, Job] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    # A member whose partition has facts waiting and a position that does not move for this
    # long is replaced (shared/stall_watch.py).
    stalled_after_seconds: float = 20.0
    # A member whose thread has been inside one call to its client this long is left behind
    # (ConsumerLoop.abandon): no call the loop makes is meant to take more than 10 s.
    hung_after_seconds: float = 30.0

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or `stop` is set)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop.set())
        producer = self._connect()
        if producer is None:
            return
        threads: list[threading.Thread] = []
        if self.handlers:
            consume = threading.Thread(target=self._consume, args=(producer,), name="consumer")
            threads.append(consume)
        if self.outbox_table:
            # However many workers run, the one holding the outbox's lease publishes.
            relay = LeasedRelay(
                self.engine,
                self.settings.kafka_bootstrap_servers,
                service=self.settings.service,
                table_name=self.outbox_table,
            )
            threads.append(threading.Thread(target=relay.run, args=(self.stop,), name="relay"))
        for name, job in self.jobs.items():
            threads.append(threading.Thread(target=job, args=(self.stop,), name=name))

        for thread in threads:
            thread.start()
        log.info("%s worker running: %s", self.settings.service, [t.name for t in threads])
        try:
            while not self.stop.wait(0.5):
                dead = [t.name for t in threads if not t.is_alive()]
                if dead:
                    log.error("worker threads died: %s; stopping", dead)
                    self.stop.set()
        finally:
            for thread in threads:
                thread.join(timeout=30)
            producer.close(timeout=10)
            log.info("%s worker stopped", self.settings.service)

    def _consume(self, producer: Any) -> None:
        """Run the consumer loop; a member stuck outside its group, stalled, or hung in a call,
        is replaced by a new one."""
        fact_keys = FactKeys.from_directory()  # each source's key read once, kept by its members
        while not self.stop.is_set():
            member = self._new_member()
            if member is None:
                return
            loop = ConsumerLoop(
                consumer=self.consumer_group,
                kafka_consumer=member,
                producer=producer,
                sessions=session_factory(self.engine),
                handlers=self.handlers,
                topics=self.topics,
                fact_keys=fact_keys,
                stalled_after_seconds=self.stalled_after_seconds,
                ends_elsewhere=functools.partial(log_ends, self.settings.kafka_bootstrap_servers),
            )
            loop.stop = self.stop
            self._watch(loop)

    def _watch(self, loop: ConsumerLoop) -> None:
        """Run `loop` in a thread of its own until it ends, or until it hangs in a call: only
        a thread other than the stuck one can notice. A loop that fails ends the worker, as it
        did when it ran in this thread."""
        failed: list[BaseException] = []
        member = threading.Thread(
            target=_run_member, args=(loop, failed), name="member", daemon=True
        )
        member.start()
        while member.is_alive():
            member.join(timeout=1.0)
            hung = loop.calls.hung(time.monotonic(), self.hung_after_seconds)
            if hung:
                log.error("%s: %s; leaving that member behind", loop.consumer, hung)
                loop.abandon()
                return
        if failed:
            raise failed[0]

    def _connect(self) -> Any:
        """A producer, once the broker answers (None if asked to stop first)."""
        servers = self.settings.kafka_bootstrap_servers
        return self._once_reachable(lambda: make_producer(servers, bootstrap_timeout_ms=5000))

    def _new_member(self) -> Any:
        """A new consumer of the group, once the broker answers (None if asked to stop first):
        a member replaced during an outage waits for the broker like the first one."""
        servers = self.settings.kafka_bootstrap_servers
        return self._once_reachable(lambda: make_consumer(servers, self.consumer_group))

    def _once_reachable(self, connect: Callable[[], Any]) -> Any:
        backoff = 0.5
        while not self.stop.is_set():
            try:
                return connect()
            except KafkaError as err:
                log.warning(
                    "kafka not reachable (%s); retrying in %.1fs", type(err).__name__, backoff
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        return None


def _run_member(loop: ConsumerLoop, failed: list[BaseException]) -> None:
    try:
        loop.run()
    except MembershipStuck as err:
        log.error("%s; joining again as a new member", err)
    except BaseException as err:
        failed.append(err)


def run_worker_process(service: str, migrations: Path, build: Callable[[Settings], Worker]) -> int:
    """A worker process's main: JSON logs, tracing, its database at head, then run until
    SIGTERM or SIGINT."""
    setup_logging(service)
    setup_tracing(service)
    settings = Settings.from_env(service)
    settings.refuse_weak_secrets()
    signing_key(service)  # refuse to start without the key its facts are signed with
    upgrade(migrations, settings.database_url)
    build(settings).run()
    return 0
