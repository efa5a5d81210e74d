"""The whole system as real processes: broker, 4 gunicorn apps, 4 workers, in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from caretrail.system import System


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    home = Path(tmp_path_factory.mktemp("system"))
    running = System(
        home,
        extra_env={
            "CARETRAIL_NOTIFY_ALLOW_LOOPBACK_WEBHOOKS": "true",
            "CARETRAIL_TRACE_FILE": str(home / "traces.jsonl"),
            "CARETRAIL_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "2",
            # What operators run with: the logs the secrets test reads hold every INFO line.
            "CARETRAIL_LOG_LEVEL": "INFO",
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def urls(system: System) -> dict[str, str]:
    return {service: system.url(service) for service in system.ports}
