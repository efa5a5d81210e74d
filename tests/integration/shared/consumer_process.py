"""A consumer in a process of its own, for the crash test.

Usage: consumer_process.py DB_URL BOOTSTRAP GROUP [--die-after-db-commit MARKER]
With --die-after-db-commit it kills itself (SIGKILL) right after its first database commit,
before the offset is committed to Kafka, and leaves MARKER behind.
"""

import os
import signal
import sys
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.broker import make_consumer, make_producer
from shared.events import TOPIC_RECORDS
from shared.fact_signing import FactKeys
from shared.inbox import ConsumerLoop
from tests.integration.shared import tiny_service as tiny


def main() -> None:
    url, bootstrap, group = sys.argv[1:4]
    if "--die-after-db-commit" in sys.argv:
        marker = Path(sys.argv[sys.argv.index("--die-after-db-commit") + 1])

        @event.listens_for(Session, "after_commit")
        def die(_session: Session) -> None:
            marker.write_text("committed")
            os.kill(os.getpid(), signal.SIGKILL)

    engine, sessions = tiny.setup(url)
    loop = ConsumerLoop(
        consumer=group,
        kafka_consumer=make_consumer(bootstrap, group),
        producer=make_producer(bootstrap),
        sessions=sessions,
        handlers=tiny.HANDLERS,
        topics=[TOPIC_RECORDS],
        fact_keys=FactKeys.from_directory(),
    )
    loop.stop_on_signals()
    loop.run()


if __name__ == "__main__":
    main()
