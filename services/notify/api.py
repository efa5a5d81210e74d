"""Notify's HTTP API: a patient's inbox, notification preferences and webhooks.

Only the patient reads and manages their own; an admin may read them.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flask import current_app
from flask_smorest import Blueprint

from services.notify.domain import (
    Notification,
    choose_preferences,
    parse_webhook_url,
    safe_addresses,
    webhook_secret,
)
from services.notify.schemas import (
    PREFERENCES_EXAMPLE,
    WEBHOOK_EXAMPLE,
    NotificationPage,
    NotificationQuery,
    NotificationRead,
    PreferencesRead,
    PreferencesWrite,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
)
from services.notify.store import DeliveryState, NotifyUnitOfWork
from shared.auth import Principal
from shared.errors import Conflict, PermissionDenied
from shared.http import authorized_by, current_principal

if TYPE_CHECKING:
    from services.notify.app import NotifyContext

MAX_WEBHOOKS = 10

blp = Blueprint("notify", __name__, url_prefix="/patients", description="A patient's notifications")


@blp.before_request
def _authenticate() -> None:
    current_principal()  # 401 before anything about the request is looked at


def _context() -> NotifyContext:
    context: NotifyContext = current_app.extensions["notify"]
    return context


def _unit_of_work() -> NotifyUnitOfWork:
    return NotifyUnitOfWork(_context().sessions)


def _require_reader(principal: Principal, patient_id: str) -> None:
    if not (principal.is_patient(patient_id) or principal.role == "admin"):
        raise PermissionDenied("only the patient or an admin may see this")


def _require_patient(principal: Principal, patient_id: str) -> None:
    if not principal.is_patient(patient_id):
        raise PermissionDenied("only the patient manages their notifications")


def _read(notification: Notification, states: list[DeliveryState]) -> dict[str, Any]:
    return {**notification.__dict__, "deliveries": [state.__dict__ for state in states]}


@blp.route("/<patient_id>/notifications")
@authorized_by(_require_reader)
@blp.arguments(NotificationQuery, location="query")
@blp.response(200, NotificationPage)
def list_notifications(query: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """List the patient's notifications, newest first."""
    with _unit_of_work() as uow:
        page = uow.notifications.page(
            patient=patient_id,
            unread_only=query["unread"],
            limit=query["limit"],
            cursor=query["cursor"],
        )
    return {
        "items": [_read(n, page.deliveries[n.id]) for n in page.items],
        "next_cursor": page.next_cursor,
    }


@blp.route("/<patient_id>/notifications/<uuid:notification_id>/read", methods=["POST"])
@authorized_by(_require_patient)
@blp.response(200, NotificationRead)
def mark_read(patient_id: str, notification_id: UUID) -> dict[str, Any]:
    """Mark a notification read."""
    with _unit_of_work() as uow:
        notification = uow.notifications.mark_read(
            patient=patient_id, notification_id=str(notification_id), now=_context().clock()
        )
        states = uow.notifications.delivery_states([notification.id])[notification.id]
        uow.commit()
    return _read(notification, states)


def _preferences_view(uow: NotifyUnitOfWork, patient_id: str) -> dict[str, Any]:
    chosen = uow.preferences.get(patient_id)
    has_webhook = bool(uow.webhooks.of_patient(patient_id))
    return {
        "email": chosen.email,
        "kinds": {
            kind: {"channels": sorted(choice.channels), "delivery": choice.delivery}
            for kind, choice in chosen.effective(has_webhook).items()
        },
    }


@blp.route("/<patient_id>/notification-preferences")
@blp.response(200, PreferencesRead)
def get_preferences(patient_id: str) -> dict[str, Any]:
    """Show how the patient hears about each kind of notification."""
    _require_reader(current_principal(), patient_id)
    with _unit_of_work() as uow:
        return _preferences_view(uow, patient_id)


@blp.route("/<patient_id>/notification-preferences", methods=["PUT"])
@authorized_by(_require_patient)
@blp.arguments(PreferencesWrite, example=PREFERENCES_EXAMPLE)
@blp.response(200, PreferencesRead)
def put_preferences(body: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Replace the patient's notification preferences (kinds left out use the defaults)."""
    chosen = choose_preferences(body["email"], body["kinds"])
    with _unit_of_work() as uow:
        uow.preferences.put(patient_id, chosen, now=_context().clock())
        view = _preferences_view(uow, patient_id)
        uow.commit()
    return view


@blp.route("/<patient_id>/webhooks", methods=["POST"])
@authorized_by(_require_patient)
@blp.arguments(WebhookCreate, example=WEBHOOK_EXAMPLE)
@blp.response(201, WebhookCreated)
@blp.alt_response(409, response="CONFLICT", description="the patient has too many webhooks")
def register_webhook(body: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Register a webhook; its signing secret is shown this once."""
    context = _context()
    allow_loopback = context.config.allow_loopback_webhooks
    target = parse_webhook_url(body["url"], allow_loopback=allow_loopback)
    safe_addresses(target, context.resolve(target.host, target.port), allow_loopback=allow_loopback)
    secret = webhook_secret(body["secret"], secrets.token_bytes(32))
    with _unit_of_work() as uow:
        if len(uow.webhooks.of_patient(patient_id)) >= MAX_WEBHOOKS:
            raise Conflict(f"a patient may register at most {MAX_WEBHOOKS} webhooks")
        webhook = uow.webhooks.add(
            patient=patient_id, url=target.url, secret=secret, now=context.clock()
        )
        uow.commit()
    return webhook.__dict__


@blp.route("/<patient_id>/webhooks")
@blp.response(200, WebhookList)
def list_webhooks(patient_id: str) -> dict[str, Any]:
    """List the patient's webhooks (without their secrets)."""
    _require_reader(current_principal(), patient_id)
    with _unit_of_work() as uow:
        return {"items": uow.webhooks.of_patient(patient_id)}


@blp.route("/<patient_id>/webhooks/<uuid:webhook_id>", methods=["DELETE"])
@authorized_by(_require_patient)
@blp.response(204)
def remove_webhook(patient_id: str, webhook_id: UUID) -> None:
    """Remove a webhook; deliveries still waiting for it fail."""
    with _unit_of_work() as uow:
        uow.webhooks.remove(patient=patient_id, webhook_id=str(webhook_id))
        uow.commit()
