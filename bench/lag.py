"""Whether audit and notify keep up: their consumer groups' lag, and how long it takes to reach 0.

The lag of a group is the facts on the topics it reads that it has not committed past yet,
counted by reading them (shared/consumer_lag.py: subtracting offsets never reaches 0 behind
the commit markers of the relays' transactions). A fact still in an outbox is in no topic
yet: the outboxes given count their unpublished rows into the lag, so 0 means every fact so
far has been processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from shared import consumer_lag
from shared.events import FACT_TOPICS, TOPIC_ACCESS, TOPIC_CONSENT, TOPIC_RECORDS

# The groups that process every fact, with the topics each reads (services/*/worker.py).
FACT_GROUPS: Mapping[str, tuple[str, ...]] = {
    "audit": FACT_TOPICS,
    "notify": (TOPIC_RECORDS, TOPIC_ACCESS, TOPIC_CONSENT),
}
POLL_SECONDS = 0.1


class ConsumerLag:
    """The fact groups' lag plus the outboxes' unpublished rows, polled until it clears."""

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, tuple[str, ...]] = FACT_GROUPS,
        outboxes: Sequence[Callable[[], int]] = (),
    ):
        self._groups = groups
        self._outboxes = outboxes  # each answers its count of unpublished rows
        self._lag = consumer_lag.ConsumerLag(bootstrap)

    def __enter__(self) -> ConsumerLag:
        return self

    def __exit__(self, *exc: object) -> None:
        self._lag.__exit__(*exc)

    def total(self) -> int:
        """Unpublished outbox rows, then facts the groups have not committed past yet."""
        return sum(pending() for pending in self._outboxes) + sum(
            self._lag.of_each(self._groups).values()
        )

    def seconds_until(self, at_most: int, timeout_seconds: float) -> float:
        """Poll until the lag is `at_most` or less; answer the seconds it took (the timeout
        if it never got there: the caller compares with it)."""
        started = time.monotonic()
        while self.total() > at_most:
            if time.monotonic() - started >= timeout_seconds:
                return timeout_seconds
            time.sleep(POLL_SECONDS)
        return time.monotonic() - started


def drain(
    bootstrap: str,
    outboxes: Sequence[Callable[[], int]] = (),
    timeout_seconds: float = 300.0,
    at_most: int = 0,
) -> float:
    """Wait until audit and notify have consumed what is already in Kafka; answer the seconds
    it took."""
    with ConsumerLag(bootstrap, outboxes=outboxes) as lag:
        return lag.seconds_until(at_most, timeout_seconds)
