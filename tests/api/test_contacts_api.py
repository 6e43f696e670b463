"""Reading, exporting and erasing contacts, and their devices, over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


def test_a_contact_reads_with_addresses_and_latest_events(client: TestClient) -> None:
    client.post(
        "/v1/identify", json={"userId": "ada", "traits": {"email": "ada@x.io", "plan": "pro"}}
    )
    client.post(
        "/v1/track",
        json={"userId": "ada", "event": "Order Completed", "properties": {"revenue": 30}},
    )
    ada = client.get("/v1/contacts/ada").json()
    assert ada["traits"] == {"email": "ada@x.io", "plan": "pro"}
    assert ada["addresses"][0]["kind"] == "email"
    assert [e["type"] for e in ada["latestEvents"]] == ["track", "identify"]


def test_an_unknown_contact_is_a_404_naming_it(client: TestClient) -> None:
    answer = client.get("/v1/contacts/nobody")
    assert answer.status_code == 404
    assert "nobody" in answer.json()["error"]["message"]


def test_export_holds_every_event(client: TestClient) -> None:
    for index in range(25):
        client.post("/v1/track", json={"userId": "ada", "event": f"E{index}"})
    answer = client.get("/v1/contacts/ada/export")
    assert answer.headers["content-disposition"].startswith("attachment")
    assert len(answer.json()["events"]) == 25
    assert len(client.get("/v1/contacts/ada").json()["latestEvents"]) == 20


def test_erase_then_a_late_event_does_not_recreate_them(client: TestClient) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@x.io"}})
    assert client.delete("/v1/contacts/ada").status_code == 204
    assert client.get("/v1/contacts/ada").status_code == 404
    late = client.post("/v1/track", json={"userId": "ada", "event": "Late"})
    assert late.status_code == 200 and late.json()["suppressed"] == 1
    assert client.get("/v1/contacts/ada").status_code == 404
    client.post("/v1/identify", json={"userId": "ada", "traits": {"plan": "back"}})
    assert client.get("/v1/contacts/ada").json()["traits"] == {"plan": "back"}


def test_devices_register_and_unregister(client: TestClient) -> None:
    ios = client.post(
        "/v1/contacts/ada/devices", json={"type": "ios", "token": "a1b2c3", "appId": "com.acme.app"}
    )
    assert ios.status_code == 201, ios.text
    assert ios.json()["details"] == {"platform": "ios", "appId": "com.acme.app"}
    web = client.post(
        "/v1/contacts/ada/devices",
        json={
            "type": "web_push",
            "subscription": {
                "endpoint": "https://push.example/sub/1",
                "expirationTime": None,
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        },
    )
    assert web.status_code == 201, web.text
    kinds = [a["kind"] for a in client.get("/v1/contacts/ada").json()["addresses"]]
    assert kinds == ["push", "web_push"]
    assert client.delete(f"/v1/contacts/ada/devices/{ios.json()['id']}").status_code == 204
    assert client.delete(f"/v1/contacts/ada/devices/{ios.json()['id']}").status_code == 404


def test_bad_devices_name_the_field(client: TestClient) -> None:
    answer = client.post("/v1/contacts/ada/devices", json={"type": "pager", "token": "x"})
    assert answer.status_code == 422
    assert answer.json()["error"]["errors"][0]["field"] == "type"
    answer = client.post("/v1/contacts/ada/devices", json={"type": "android"})
    assert answer.json()["error"]["errors"] == [
        {"field": "token", "message": "android needs the device token"}
    ]
    answer = client.post(
        "/v1/contacts/ada/devices",
        json={
            "type": "web_push",
            "subscription": {
                "endpoint": "http://push.example/1",
                "keys": {"p256dh": "x", "auth": AUTH},
            },
        },
    )
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["error"]["errors"]}
    assert fields == {"subscription.endpoint", "subscription.keys.p256dh"}
    assert client.get("/v1/contacts/ada").status_code == 404  # nothing half-written
