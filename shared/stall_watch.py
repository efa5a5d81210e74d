"""Whether a group member still gets through the facts waiting on its partitions.

kafka-python 3.0.12 can keep a member in its group, polling without an error, while it never
fetches one of its partitions again. CI's fault suite saw it once, after two of three brokers
came back: notify's lag grew for five minutes while every other group caught up. The client
reports nothing, so the consumer loop watches for it (shared/inbox.py). A partition is stalled
when facts wait past the member's position and that position has not moved for
`stalled_after` seconds. The loop then replaces the member, as it does for a refused membership.

Positions and ends are compared as a read_committed consumer sees them: its position steps over
commit markers and aborted batches, and its end is the last stable offset, so a caught-up
partition has position == end even behind a transaction still open. A partition the member
holds without any position (none committed by the group, and the reset to the earliest offset
never done) stalls too: the fault suite saw that one, a consent member holding a partition it
never read.

A member can also stop inside a call: kafka-python 3.0.12 waits for its IO thread's answer
without a deadline (`NetworkSelector.run`; dpkp/kafka-python#3121, fixed after 3.0.12), so a
call whose answer never comes never returns, and no check in the same thread runs again.
`CallClock` notes when the member's thread entered a call, so that another thread can see it
has been in there too long and replace the member (shared/worker.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from kafka import TopicPartition


@dataclass(frozen=True)
class Stall:
    partition: TopicPartition
    position: int | None
    end: int | None
    seconds: float

    def __str__(self) -> str:
        where = "had no position" if self.position is None else f"stayed at {self.position}"
        end = (
            "its log's end was never readable"
            if self.end is None
            else f"its log ends at {self.end}"
        )
        return (
            f"{self.partition.topic}/{self.partition.partition} has {where} "
            f"for {self.seconds:.0f}s while {end}"
        )


@dataclass(frozen=True)
class _Waiting:
    position: int | None
    since: float


class StallWatch:
    """Remembers since when each partition's position has not moved while facts waited."""

    def __init__(self, stalled_after_seconds: float) -> None:
        self._stalled_after = stalled_after_seconds
        self._waiting: dict[TopicPartition, _Waiting] = {}
        self._ends: Mapping[TopicPartition, int] = {}

    def observe(
        self,
        now: float,
        positions: Mapping[TopicPartition, int | None],
        ends: Mapping[TopicPartition, int] | None,
    ) -> list[Stall]:
        """Note where each of the member's partitions stands at `now` (monotonic seconds; a
        position of None: the member has none); answer those stalled. A partition missing from
        either mapping is not judged.

        `ends` None: the member could not read them. It is judged against the last ends it
        read, since the facts known to wait then wait still, and a partition whose end it never
        read is taken to have facts waiting: a member that joined cut off from a broker would
        otherwise never be judged. A member whose client no longer reaches a broker that others
        reach is as stuck as one that stopped fetching; during a real outage, replacing a
        member costs a rejoin, nothing more."""
        unreadable = ends is None
        ends = self._ends if ends is None else ends
        self._ends = ends
        waiting: dict[TopicPartition, _Waiting] = {}
        stalls = []
        for tp, position in positions.items():
            end = ends.get(tp)
            if end is None and not unreadable:
                continue
            # No position: as if at the start of the partition (topics keep every fact).
            if end is not None and (position or 0) >= end:
                continue
            before = self._waiting.get(tp)
            if before is None or before.position != position:
                waiting[tp] = _Waiting(position, now)
                continue
            waiting[tp] = before
            if now - before.since >= self._stalled_after:
                stalls.append(Stall(tp, position, end, now - before.since))
        self._waiting = waiting
        return stalls

    def last_position(self, partition: TopicPartition) -> int | None:
        """The position last observed for `partition` while facts waited on it (None if it
        was not waiting, or had none): where a member that cannot tell its position now is
        taken to stand, so that being unable to tell does not restart the wait."""
        waiting = self._waiting.get(partition)
        return None if waiting is None else waiting.position


class CallClock:
    """Which call to its client a member's thread is in, and since when; read by another
    thread, since the member's own is the one that does not come back."""

    def __init__(self) -> None:
        # One tuple, replaced whole: the other thread reads the call and its start together.
        self._call: tuple[str, float] | None = None

    @contextmanager
    def timing(self, call: str) -> Iterator[None]:
        self._call = (call, time.monotonic())
        try:
            yield
        finally:
            self._call = None

    def hung(self, now: float, after_seconds: float) -> str | None:
        """What the member is stuck in, if it entered a call at least `after_seconds` before
        `now` (monotonic seconds) and is in it still."""
        call = self._call
        if call is None or now - call[1] < after_seconds:
            return None
        return f"{call[0]} has not returned in {now - call[1]:.0f}s"
