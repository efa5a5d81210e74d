"""The trail's projection: every fact on every fact topic becomes one chained entry.

The entry's unique event id makes a redelivery a no-op even where the inbox cannot see it:
a producer that retried can leave one event at two offsets, and the second is skipped the
same way live and in a rebuild, so both build the same chains.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.audit.domain import REVIEWED_TYPE, Review, entry_of
from services.audit.store import Reviews, Trail
from shared.events import REGISTRY, Event
from shared.inbox import Handler, Origin


def record_fact(session: Session, event: Event, origin: Origin) -> None:
    """Append the fact to its partition's chain (the one handler of every fact type)."""
    append_fact(Trail(session), event, origin)


def append_fact(trail: Trail, event: Event, origin: Origin) -> None:
    """Append the fact; a break-glass review is also kept as a review if it is new."""
    if trail.append(entry_of(event, origin)) is not None:
        keep_review(trail.session, event)


def append_facts(trail: Trail, facts: Sequence[tuple[Event, Origin]]) -> None:
    """Append a batch in Kafka order, as `append_fact` one at a time would (the rebuild's path)."""
    appended = trail.append_all([entry_of(event, origin) for event, origin in facts])
    new_ids = {stored.entry.event_id for stored in appended}
    for event, _ in facts:
        if event.id in new_ids:
            keep_review(trail.session, event)


def keep_review(session: Session, event: Event) -> None:
    """Store a break-glass review fact as a review unless it is stored already.

    The review was stored when it was made; it is stored here again only when the database
    was rebuilt from Kafka without it.
    """
    if event.type != REVIEWED_TYPE:
        return
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


HANDLERS: dict[str, Handler] = dict.fromkeys(REGISTRY, record_fact)
