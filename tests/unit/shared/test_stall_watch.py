"""A partition is stalled when facts wait past a position that has not moved for long enough."""

from __future__ import annotations

import time

from kafka import TopicPartition

from shared.stall_watch import CallClock, StallWatch

P0 = TopicPartition("caretrail.access.v1", 0)
P1 = TopicPartition("caretrail.access.v1", 1)


def test_a_position_that_stays_while_facts_wait_is_a_stall_once_long_enough():
    watch = StallWatch(stalled_after_seconds=20)
    assert watch.observe(0, {P0: 5}, {P0: 9}) == []
    assert watch.observe(19, {P0: 5}, {P0: 12}) == []
    [stall] = watch.observe(20, {P0: 5}, {P0: 12})
    assert (stall.partition, stall.position, stall.end, stall.seconds) == (P0, 5, 12, 20)
    assert str(stall) == ("caretrail.access.v1/0 has stayed at 5 for 20s while its log ends at 12")


def test_a_position_that_moves_starts_the_wait_again():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5}, {P0: 9})
    assert watch.observe(15, {P0: 6}, {P0: 9}) == []
    assert watch.observe(30, {P0: 6}, {P0: 9}) == []
    assert [s.partition for s in watch.observe(35, {P0: 6}, {P0: 9})] == [P0]


def test_a_caught_up_partition_never_stalls_however_long_it_is_quiet():
    watch = StallWatch(stalled_after_seconds=20)
    for now in range(0, 100, 10):
        assert watch.observe(now, {P0: 9, P1: 0}, {P0: 9, P1: 0}) == []


def test_only_the_stalled_partition_is_named():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5, P1: 1}, {P0: 9, P1: 4})
    assert [s.partition for s in watch.observe(25, {P0: 5, P1: 3}, {P0: 9, P1: 4})] == [P0]


def test_a_partition_caught_up_in_between_waits_from_scratch():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5}, {P0: 9})
    watch.observe(10, {P0: 5}, {P0: 5})  # the end read lagged behind: nothing waited then
    assert watch.observe(25, {P0: 5}, {P0: 9}) == []


def test_a_member_that_cannot_read_the_end_is_judged_by_the_last_end_it_read():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5, P1: 4}, {P0: 9, P1: 4})
    assert watch.observe(10, {P0: 5, P1: 4}, None) == []
    assert [s.partition for s in watch.observe(20, {P0: 5, P1: 4}, None)] == [P0]


def test_a_member_that_never_read_an_end_it_cannot_read_now_is_judged_as_if_facts_waited():
    watch = StallWatch(stalled_after_seconds=20)
    assert watch.observe(0, {P0: None, P1: 3}, None) == []
    assert watch.observe(10, {P0: None, P1: 4}, None) == []
    [stall] = watch.observe(20, {P0: None, P1: 4}, None)
    assert str(stall) == (
        "caretrail.access.v1/0 has had no position for 20s while its log's end was never readable"
    )


def test_a_partition_the_ends_read_do_not_name_is_not_judged():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5}, {})
    assert watch.observe(60, {P0: 5}, {}) == []


def test_a_partition_held_without_a_position_stalls_when_facts_are_on_it():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: None, P1: None}, {P0: 4, P1: 0})
    [stall] = watch.observe(20, {P0: None, P1: None}, {P0: 4, P1: 0})
    assert stall.partition == P0  # P1 is empty: nothing waits without a position
    assert str(stall) == "caretrail.access.v1/0 has had no position for 20s while its log ends at 4"


def test_the_last_position_of_a_partition_is_known_only_while_facts_wait_on_it():
    watch = StallWatch(stalled_after_seconds=20)
    watch.observe(0, {P0: 5, P1: 4}, {P0: 9, P1: 4})
    assert (watch.last_position(P0), watch.last_position(P1)) == (5, None)


def test_a_call_is_hung_once_it_has_lasted_long_enough_and_only_while_it_lasts():
    clock = CallClock()
    assert clock.hung(time.monotonic() + 100, after_seconds=30) is None
    with clock.timing("commit"):
        now = time.monotonic()
        assert clock.hung(now, after_seconds=30) is None
        assert clock.hung(now + 31, after_seconds=30) == "commit has not returned in 31s"
    assert clock.hung(now + 31, after_seconds=30) is None
