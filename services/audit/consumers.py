"""The trail's projection: every fact on every fact topic becomes one chained entry.

The entry's unique event id makes a redelivery a no-op even where the inbox cannot see it:
a producer that retried can leave one event at two offsets, and the second is skipped the
same way live and in a rebuild, so both build the same chains.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.audit.domain import REVIEWED_TYPE, Review, entry_of
from services.audit.store import Reviews, Trail
from shared.events import REGISTRY, Event
from shared.inbox import Handler, Origin


def record_fact(session: Session, event: Event, origin: Origin) -> None:
    """Append the fact to its partition's chain."""
    Trail(session).append(entry_of(event, origin))


def record_review(session: Session, event: Event, origin: Origin) -> None:
    """Append a break-glass review to the trail, and keep the review itself if it is new.

    The review was stored when it was made; it is stored here again only when the database
    was rebuilt from Kafka without it.
    """
    record_fact(session, event, origin)
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


HANDLERS: dict[str, Handler] = {
    name: record_review if name == REVIEWED_TYPE else record_fact for name in REGISTRY
}
