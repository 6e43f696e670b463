"""One-click unsubscribe (RFC 8058): a GET only asks; a POST unsubscribes at once, once."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from junction.render.personalise import Links
from junction.store import sends
from junction.store.identity import find_contact_id
from junction.store.preferences import choices_of
from junction.store.tables import events, preferences
from tests.conftest import SECRET

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _message(
    client: TestClient, database, clock, tenant, category: str = "news"
) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Ada, the topic "news", and one email to her in ``category``: (her contact id, the
    message's unsubscribe path)."""
    client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.com"}})
    client.put("/v1/topics/news", json={"name": "Newsletter"})
    with database.write() as conn:
        request = sends.SendRequest(
            channel="email",
            to={"userId": "ada"},
            content={"subject": "This week", "text": "Hello"},
            category=category,
        )
        answer = sends.accept(conn, tenant.id, request, clock.now())
        contact_id = find_contact_id(conn, tenant.id, "ada")
    assert answer.status_code == 202, answer.body
    assert contact_id is not None
    return contact_id, Links(SECRET.encode(), "").unsubscribe_url(answer.body["id"])


def _state(database, contact_id: int) -> tuple[dict[tuple[str, str], bool], list[str]]:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        names = conn.execute(
            select(events.c.name).where(events.c.name == "message.unsubscribed")
        ).scalars()
        return choices_of(conn, [contact_id]).get(contact_id, {}), list(names)


def test_a_get_only_asks(client: TestClient, database, clock, tenant) -> None:  # type: ignore[no-untyped-def]
    ada, path = _message(client, database, clock, tenant)
    page = client.get(path)
    assert page.status_code == 200
    assert "Unsubscribe from Newsletter emails?" in page.text
    assert '<form method="post">' in page.text
    assert "<script" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert _state(database, ada) == ({}, [])


def test_a_one_click_post_unsubscribes_at_once_and_once(
    client: TestClient, database, clock, tenant
) -> None:  # type: ignore[no-untyped-def]
    ada, path = _message(client, database, clock, tenant)
    answer = client.post(path, data=ONE_CLICK)
    assert answer.status_code == 200
    assert "You are unsubscribed from Newsletter emails." in answer.text
    assert _state(database, ada) == ({("news", "email"): False}, ["message.unsubscribed"])
    with database.read() as conn:
        first = conn.execute(select(preferences.c.source, preferences.c.updated_at)).one()
    assert first.source == "unsubscribe"

    clock.advance(timedelta(minutes=1))
    again = client.post(path, data=ONE_CLICK)
    assert again.status_code == 200
    assert "You are unsubscribed from Newsletter emails." in again.text
    assert _state(database, ada) == ({("news", "email"): False}, ["message.unsubscribed"])
    with database.read() as conn:
        assert conn.execute(select(preferences.c.source, preferences.c.updated_at)).one() == first

    # The page links to the preference center, which shows the choice.
    center = answer.text.split('<a href="')[1].split('"')[0]
    assert center.startswith("/p/")
    shown = client.get(center)
    assert shown.status_code == 200
    assert 'value="news:email">' in shown.text  # present, not checked


def test_a_message_outside_any_topic_opts_out_of_all_marketing(
    client: TestClient, database, clock, tenant
) -> None:  # type: ignore[no-untyped-def]
    ada, path = _message(client, database, clock, tenant, category="transactional")
    answer = client.post(path, data=ONE_CLICK)
    assert "You are unsubscribed from all marketing emails." in answer.text
    assert _state(database, ada)[0] == {("*", "email"): False}


def test_a_bad_code_is_a_404_and_writes_nothing(
    client: TestClient, database, clock, tenant
) -> None:  # type: ignore[no-untyped-def]
    ada, path = _message(client, database, clock, tenant)
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    open_code = "/u/" + Links(SECRET.encode(), "").code(1, 0, "open")
    for bad in (
        tampered,
        "/u/short",
        open_code,
        "/u/" + Links(SECRET.encode(), "").code(999, 0, "unsubscribe"),
    ):
        assert client.post(bad, data=ONE_CLICK).status_code == 404
        assert client.get(bad).status_code == 404
    assert _state(database, ada) == ({}, [])
