"""How fast the live audit worker catches up: N facts on a broker of its own, then time
`build_worker(...)` on a fresh consumer group until every fact is an entry (SQLite).

    .venv/bin/python -m bench.consume_rate --events 30000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from caretrail.kafka_server import LocalBroker, free_port
from services.audit.measure_rebuild import write_facts
from services.audit.store import entries, metadata
from services.audit.worker import build_worker
from shared.config import Settings
from shared.db import create_schema, make_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    events = parser.parse_args().events
    home = Path(tempfile.mkdtemp(prefix="caretrail-consume-"))
    broker = LocalBroker(data_dir=home / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        print(f"wrote {events} facts in {write_facts(broker.bootstrap, events):.1f} s")
        url = f"sqlite:///{home}/audit.sqlite3"
        engine = make_engine(url)
        create_schema(engine, metadata)
        worker = build_worker(
            Settings.from_env(
                "audit",
                database_url=url,
                kafka_bootstrap_servers=broker.bootstrap,
                consumer_group="consume-rate",
                checkpoint_interval_seconds="3600",
            )
        )
        thread = threading.Thread(target=worker.run)
        started = time.perf_counter()
        thread.start()
        count = 0
        while count < events and time.perf_counter() - started < 900:
            time.sleep(0.5)
            with engine.connect() as conn:
                count = conn.execute(select(func.count()).select_from(entries)).scalar_one()
        took = time.perf_counter() - started
        print(f"live audit worker: {count} entries in {took:.1f} s = {count / took:.0f} events/s")
        worker.stop.set()
        thread.join()
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
