"""The inbox API: paging, unread, mark read; who may do what; bad input."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import bearer
from tests.unit.notify import facts


@pytest.fixture
def patient() -> str:
    return f"p-{uuid.uuid4()}"


@pytest.fixture
def own(token, patient):
    return bearer(token("patient", patient, patient=patient))


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_the_inbox_pages_newest_first_with_an_opaque_cursor(notify, patient, own):
    for n in range(5):  # five readers: reads by one reader would fold into one notification
        notify.handle(facts.access(patient, actor=f"practitioner:dr-{n}", record_ids=(f"r-{n}",)))
    url = f"/patients/{patient}/notifications"
    first = notify.client.get(url, query_string={"limit": 2}, headers=own).get_json()
    assert [n["details"]["record_ids"] for n in first["items"]] == [["r-4"], ["r-3"]]
    second = notify.client.get(
        url, query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=own
    ).get_json()
    third = notify.client.get(
        url, query_string={"limit": 2, "cursor": second["next_cursor"]}, headers=own
    ).get_json()
    assert [n["details"]["record_ids"] for n in second["items"] + third["items"]] == [
        ["r-2"],
        ["r-1"],
        ["r-0"],
    ]
    assert third["next_cursor"] is None


def test_marking_read_takes_a_notification_out_of_the_unread_list(notify, patient, own):
    notify.handle(facts.access(patient))
    notify.handle(facts.record_created(patient))
    unread = notify.inbox(patient, own["Authorization"].split()[1], unread="true")
    assert len(unread) == 2

    url = f"/patients/{patient}/notifications/{unread[0]['id']}/read"
    marked = notify.client.post(url, headers=own)
    assert marked.status_code == 200 and marked.get_json()["read_at"] is not None
    again = notify.client.post(url, headers=own)  # idempotent: the first reading stands
    assert again.get_json()["read_at"] == marked.get_json()["read_at"]

    left = notify.inbox(patient, own["Authorization"].split()[1], unread="true")
    assert [n["id"] for n in left] == [unread[1]["id"]]


def test_an_admin_reads_a_patients_inbox_but_does_not_mark_it(notify, patient, token):
    notify.handle(facts.access(patient))
    admin = bearer(token("admin", "ops"))
    [item] = notify.client.get(f"/patients/{patient}/notifications", headers=admin).get_json()[
        "items"
    ]
    marked = notify.client.post(
        f"/patients/{patient}/notifications/{item['id']}/read", headers=admin
    )
    assert_problem(marked, 403)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/notifications"),
        ("get", "/notification-preferences"),
        ("put", "/notification-preferences"),
        ("get", "/webhooks"),
        ("post", "/webhooks"),
    ],
)
@pytest.mark.parametrize(
    "who",
    [
        ("patient", "p-other", {"patient": "p-other"}),
        ("practitioner", "dr-lee", {"org": "org-a"}),
        ("compliance", "cas", {}),
    ],
    ids=["another patient", "practitioner", "compliance"],
)
def test_nobody_but_the_patient_or_an_admin_may_see_or_change_it(
    notify, patient, token, method, path, who
):
    role, sub, claims = who
    response = getattr(notify.client, method)(
        f"/patients/{patient}{path}",
        json={}
        if method == "put"
        else {"url": "https://example.com/"}
        if method == "post"
        else None,
        headers=bearer(token(role, sub, **claims)),
    )
    assert_problem(response, 403)


def test_another_patient_cannot_mark_my_notification_read(notify, patient, own, token):
    notify.handle(facts.access(patient))
    [item] = notify.inbox(patient, own["Authorization"].split()[1])
    other = bearer(token("patient", "p-other", patient="p-other"))
    assert_problem(
        notify.client.post(f"/patients/{patient}/notifications/{item['id']}/read", headers=other),
        403,
    )
    # and through their own path it is not theirs to find
    assert_problem(
        notify.client.post(f"/patients/p-other/notifications/{item['id']}/read", headers=other),
        404,
    )


def test_no_token_is_401_before_anything_else(notify, patient):
    response = notify.client.put(
        f"/patients/{patient}/notification-preferences", json={"kinds": {"nope": {}}}
    )
    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("query", "status"),
    [({"limit": 0}, 422), ({"limit": "many"}, 422), ({"cursor": "not-a-cursor"}, 422)],
)
def test_bad_list_parameters_are_refused(notify, patient, own, query, status):
    assert_problem(
        notify.client.get(f"/patients/{patient}/notifications", query_string=query, headers=own),
        status,
    )


def test_unknown_or_malformed_notification_ids_are_404(notify, patient, own):
    base = f"/patients/{patient}/notifications"
    assert_problem(notify.client.post(f"{base}/{uuid.uuid4()}/read", headers=own), 404)
    assert_problem(notify.client.post(f"{base}/not-a-uuid/read", headers=own), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"kinds": {"gossip": {"channels": ["inbox"]}}},
        {"kinds": {"record-accessed": {"channels": ["pigeon"]}}},
        {"kinds": {"record-accessed": {"channels": ["inbox"], "delivery": "weekly"}}},
        {"kinds": {"record-accessed": {"channels": ["email"]}}},
        {"kinds": {"break-glass": {"channels": ["inbox"], "delivery": "daily_digest"}}},
        {"email": "not an address"},
        {"kinds": [], "extra": 1},
    ],
    ids=[
        "unknown kind",
        "unknown channel",
        "unknown delivery",
        "email without address",
        "break-glass digest",
        "bad email",
        "unknown field",
    ],
)
def test_bad_preferences_are_refused_and_change_nothing(notify, patient, own, body):
    url = f"/patients/{patient}/notification-preferences"
    before = notify.client.get(url, headers=own).get_json()
    assert_problem(notify.client.put(url, json=body, headers=own), 422)
    assert notify.client.get(url, headers=own).get_json() == before


def test_preferences_show_defaults_then_what_the_patient_chose(notify, patient, own, receiver):
    url = f"/patients/{patient}/notification-preferences"
    defaults = notify.client.get(url, headers=own).get_json()
    assert defaults["email"] is None
    assert set(defaults["kinds"]) >= {"record-accessed", "break-glass", "consent-expiring"}
    assert all(
        k == {"channels": ["inbox"], "delivery": "immediate"} for k in defaults["kinds"].values()
    )
    notify.client.post(f"/patients/{patient}/webhooks", json={"url": receiver().url}, headers=own)
    chosen = notify.client.put(
        url,
        json={
            "email": "pat@example.org",
            "kinds": {"access-denied": {"channels": ["webhook"], "delivery": "daily_digest"}},
        },
        headers=own,
    ).get_json()
    assert chosen["kinds"]["access-denied"] == {
        "channels": ["inbox", "webhook"],
        "delivery": "daily_digest",
    }
    assert chosen["kinds"]["break-glass"] == {
        "channels": ["email", "inbox", "webhook"],
        "delivery": "immediate",
    }
    assert notify.client.get(url, headers=own).get_json() == chosen


@pytest.mark.parametrize(
    "body",
    [{}, {"url": ""}, {"url": "not a url"}, {"url": "ftp://example.com/"}, {"url": 42}],
)
def test_bad_webhook_registrations_are_refused(notify, patient, own, body):
    assert_problem(notify.client.post(f"/patients/{patient}/webhooks", json=body, headers=own), 422)


def test_a_body_that_is_not_json_is_415(notify, patient, own):
    response = notify.client.post(
        f"/patients/{patient}/webhooks", data="url=x", headers={**own, "Content-Type": "text/plain"}
    )
    assert_problem(response, 415)
