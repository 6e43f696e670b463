"""Topics and preferences over HTTP, and the signed link to the preference center."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from junction.store.preferences import choices_of
from junction.store.tables import preferences


def _ada(client: TestClient) -> None:
    traits = {"email": "ada@example.com", "phone": "+33612345678"}
    assert client.post("/v1/identify", json={"userId": "ada", "traits": traits}).is_success


def _fields(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    return [e["field"] for e in answer.json()["error"]["errors"]]


def test_topics_are_created_listed_updated_and_deleted(client: TestClient) -> None:
    created = client.put("/v1/topics/news", json={"name": "Newsletter"})
    assert created.status_code == 200
    assert created.json() == {
        "key": "news",
        "name": "Newsletter",
        "description": None,
        "defaultOptIn": True,
        "channels": None,
    }
    client.put(
        "/v1/topics/offers",
        json={"name": "Offers", "description": "Deals", "defaultOptIn": False, "channels": ["sms"]},
    )
    client.put("/v1/topics/news", json={"name": "Weekly news", "channels": ["email", "push"]})
    listed = client.get("/v1/topics").json()["topics"]
    assert [(t["key"], t["name"], t["channels"]) for t in listed] == [
        ("news", "Weekly news", ["email", "push"]),
        ("offers", "Offers", ["sms"]),
    ]
    assert client.delete("/v1/topics/offers").status_code == 204
    assert [t["key"] for t in client.get("/v1/topics").json()["topics"]] == ["news"]
    assert client.delete("/v1/topics/offers").status_code == 404


def test_bad_topics_are_refused_naming_the_field(client: TestClient) -> None:
    assert _fields(client.put("/v1/topics/News!", json={"name": "x"})) == ["key"]
    assert _fields(client.put("/v1/topics/transactional", json={"name": "x"})) == ["key"]
    answer = client.put("/v1/topics/news", json={"name": "x", "channels": ["email", "fax"]})
    assert _fields(answer) == ["channels"]
    assert _fields(client.put("/v1/topics/news", json={})) == ["name"]
    assert client.get("/v1/topics").json()["topics"] == []


def test_effective_preferences_take_topic_defaults_until_chosen(client: TestClient) -> None:
    _ada(client)
    client.put("/v1/topics/news", json={"name": "Newsletter"})
    client.put("/v1/topics/offers", json={"name": "Offers", "defaultOptIn": False})
    client.put("/v1/topics/alerts", json={"name": "Alerts", "channels": ["push"]})

    view = client.get("/v1/contacts/ada/preferences").json()
    by_key = {t["key"]: t["channels"] for t in view["topics"]}
    # No channels of its own: every channel Ada has an active address for, plus in-app.
    assert by_key["news"] == {"email": True, "sms": True, "whatsapp": True, "in_app": True}
    assert by_key["offers"] == {"email": False, "sms": False, "whatsapp": False, "in_app": False}
    assert by_key["alerts"] == {"push": True}
    assert view["optedOut"] == [] and view["choices"] == []

    answer = client.put(
        "/v1/contacts/ada/preferences",
        json={
            "preferences": [
                {"topic": "offers", "channel": "email", "optedIn": True},
                {"topic": "news", "channel": "sms", "optedIn": False},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    by_key = {t["key"]: t["channels"] for t in answer.json()["topics"]}
    assert by_key["offers"]["email"] is True and by_key["offers"]["sms"] is False
    assert by_key["news"]["sms"] is False and by_key["news"]["email"] is True
    assert {
        (c["topic"], c["channel"], c["optedIn"], c["source"]) for c in answer.json()["choices"]
    } == {
        ("offers", "email", True, "api"),
        ("news", "sms", False, "api"),
    }


def test_a_global_opt_out_is_topic_star(client: TestClient, database) -> None:  # type: ignore[no-untyped-def]
    _ada(client)
    client.put("/v1/topics/news", json={"name": "Newsletter"})
    answer = client.put(
        "/v1/contacts/ada/preferences",
        json={"preferences": [{"topic": "*", "channel": "sms", "optedIn": False}]},
    )
    assert answer.json()["optedOut"] == ["sms"]
    with database.read() as conn:
        assert list(choices_of(conn, [1]).values()) == [{("*", "sms"): False}]


def test_bad_preferences_are_refused_whole(client: TestClient, database) -> None:  # type: ignore[no-untyped-def]
    _ada(client)
    client.put("/v1/topics/news", json={"name": "Newsletter"})
    client.put("/v1/topics/alerts", json={"name": "Alerts", "channels": ["push"]})
    answer = client.put(
        "/v1/contacts/ada/preferences",
        json={
            "preferences": [
                {"topic": "news", "channel": "email", "optedIn": False},
                {"topic": "nope", "channel": "email", "optedIn": False},
                {"topic": "news", "channel": "fax", "optedIn": False},
            ]
        },
    )
    assert _fields(answer) == ["preferences.1.topic", "preferences.2.channel"]
    answer = client.put(
        "/v1/contacts/ada/preferences",
        json={
            "preferences": [
                {"topic": "news", "channel": "email", "optedIn": False},
                {"topic": "alerts", "channel": "sms", "optedIn": False},
            ]
        },
    )
    assert _fields(answer) == ["preferences.1.channel"]
    answer = client.put(
        "/v1/contacts/ada/preferences",
        json={"preferences": [{"topic": "news", "channel": "email"}]},
    )
    assert _fields(answer) == ["preferences.0.optedIn"]
    with database.read() as conn:
        assert conn.execute(preferences.select()).all() == []


def test_an_unknown_contact_is_a_404(client: TestClient) -> None:
    assert client.get("/v1/contacts/nobody/preferences").status_code == 404
    answer = client.put("/v1/contacts/nobody/preferences", json={"preferences": []})
    assert answer.status_code == 404
    assert client.post("/v1/contacts/nobody/preference-link", json={}).status_code == 404


def test_the_preference_link_opens_the_center(client: TestClient, clock) -> None:  # type: ignore[no-untyped-def]
    _ada(client)
    client.put("/v1/topics/news", json={"name": "Newsletter"})
    answer = client.post("/v1/contacts/ada/preference-link", json={"ttlHours": 2})
    assert answer.status_code == 200, answer.text
    link = answer.json()
    assert link["expiresAt"].startswith("2026-11-20T11:00:00")
    path = urlsplit(link["url"]).path
    assert path.startswith("/p/")
    page = client.get(path)
    assert page.status_code == 200
    assert "Newsletter" in page.text

    default = client.post("/v1/contacts/ada/preference-link").json()
    assert default["expiresAt"].startswith("2026-12-20T09:00:00")  # 30 days
    assert _fields(client.post("/v1/contacts/ada/preference-link", json={"ttlHours": 9000})) == [
        "ttlHours"
    ]


def test_preferences_need_an_api_key(client: TestClient) -> None:
    answer = client.get("/v1/topics", headers={"Authorization": ""})
    assert answer.status_code == 401
