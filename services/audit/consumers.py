"""The trail's projection: every fact on every fact topic becomes one chained entry.

The entry's unique event id makes a redelivery a no-op even where the inbox cannot see it:
a producer that retried can leave one event at two offsets, and the second is skipped the
same way live and in a rebuild, so both build the same chains.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.audit.domain import REVIEWED_TYPE, Review, entry_fields
from services.audit.store import Reviews, Trail
from shared.events import REGISTRY, Event
from shared.inbox import BatchHandler, Fact, Handler


def record_facts(session: Session, facts: Sequence[Fact]) -> None:
    """Append a poll's facts of one partition to its chain (the one handler of every type)."""
    append_facts(Trail(session), facts)


def append_facts(trail: Trail, facts: Sequence[Fact]) -> None:
    """Append a batch in Kafka order with one INSERT; a break-glass review fact that is new
    in the trail is also kept as a review."""
    new_ids = set(trail.append_all([entry_fields(event, origin) for event, origin in facts]))
    for event, _ in facts:
        if event.type == REVIEWED_TYPE and event.id in new_ids:
            keep_review(trail.session, event)


def keep_review(session: Session, event: Event) -> None:
    """Store a break-glass review fact as a review unless it is stored already.

    The review was stored when it was made; it is stored here again only when the database
    was rebuilt from Kafka without it.
    """
    reviews = Reviews(session)
    if reviews.get(event.data["entry_id"]) is None:
        reviews.add(
            Review(
                entry_id=event.data["entry_id"],
                patient=event.data["patient"],
                decision=event.data["decision"],
                note=event.data.get("note"),
                reviewer=event.actor,
                reviewed_at=event.time,
            )
        )


HANDLERS: dict[str, Handler] = dict.fromkeys(REGISTRY, BatchHandler(record_facts))
