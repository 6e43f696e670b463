"""Choosing a provider per channel, with its configuration validated."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_channel_defaults_to_capture_and_can_be_set(client: TestClient) -> None:
    assert client.get("/v1/channels").json() == {"channels": []}
    answer = client.put("/v1/channels/sms", json={"provider": "capture", "config": {}})
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/channels").json()["channels"] == [
        {"channel": "sms", "provider": "capture", "config": {}}
    ]
    assert client.delete("/v1/channels/sms").status_code == 204
    assert client.get("/v1/channels").json() == {"channels": []}


def test_bad_choices_name_the_field(client: TestClient) -> None:
    unknown = client.put("/v1/channels/sms", json={"provider": "carrier-pigeon"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["errors"][0]["field"] == "provider"
    bad_channel = client.put("/v1/channels/fax", json={"provider": "capture"})
    assert bad_channel.status_code == 422
    assert bad_channel.json()["error"]["errors"][0]["field"] == "channel"
    bad_config = client.put("/v1/channels/sms", json={"provider": "capture", "config": {"x": 1}})
    assert bad_config.status_code == 422
    assert bad_config.json()["error"]["errors"][0]["field"] == "config.x"
    assert client.get("/v1/channels").json() == {"channels": []}


def test_secrets_are_never_shown_in_clear(client: TestClient) -> None:
    import base64

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    config = {"secret": secret, "headers": {"X-Tenant": "acme-private-value"}}
    answer = client.put("/v1/channels/webhook", json={"provider": "webhook", "config": config})
    assert answer.status_code == 200, answer.text
    for shown in (answer.json(), client.get("/v1/channels").json()["channels"][0]):
        assert secret not in str(shown) and "acme-private-value" not in str(shown)
        assert shown["config"]["secret"].startswith("********")
        assert set(shown["config"]["headers"]) == {"X-Tenant"}


def test_a_provider_must_carry_the_channel(client: TestClient) -> None:
    answer = client.put("/v1/channels/sms", json={"provider": "webhook", "config": {}})
    assert answer.status_code == 422
    assert "does not carry sms" in answer.json()["error"]["errors"][0]["message"]


def test_a_config_sent_back_masked_keeps_its_secrets(client: TestClient, database) -> None:  # type: ignore[no-untyped-def]
    import base64

    from junction.store.tables import provider_configs

    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    client.put("/v1/channels/webhook", json={"provider": "webhook", "config": {"secret": secret}})
    shown = client.get("/v1/channels").json()["channels"][0]["config"]
    edited = {**shown, "timeout": 5}
    answer = client.put("/v1/channels/webhook", json={"provider": "webhook", "config": edited})
    assert answer.status_code == 200, answer.text
    with database.read() as conn:
        stored = conn.execute(provider_configs.select()).one().config
    assert stored == {"secret": secret, "timeout": 5}
