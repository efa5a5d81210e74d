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
    """Append the fact to its partition's chain (the one handler of every fact type)."""
    append_fact(Trail(session), event, origin)


def append_fact(trail: Trail, event: Event, origin: Origin) -> None:
    """Append the fact; a break-glass review is also kept as a review if it is new.

    The review was stored when it was made; it is stored here again only when the database
    was rebuilt from Kafka without it.
    """
    if trail.append(entry_of(event, origin)) is None or event.type != REVIEWED_TYPE:
        return
    reviews = Reviews(trail.session)
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
