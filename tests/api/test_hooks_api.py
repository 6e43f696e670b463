"""Provider callbacks: checked by the provider's adapter, then applied forward only."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_callback_for_an_unconfigured_provider_is_a_404(client: TestClient, tenant) -> None:
    answer = client.post(
        f"/hooks/{tenant.id}/twilio_sms", content=b"MessageSid=SM1", headers={"Authorization": ""}
    )
    assert answer.status_code == 404


def test_a_bounce_forwarded_to_the_hook_marks_the_address(
    client: TestClient, database, clock, tenant
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from junction.channels.base import SendResult
    from junction.engine.dispatcher import Dispatcher
    from junction.store.tables import messages
    from tests.channels.test_dsn import dsn

    token = "bounce-token-0123456789"
    config = {
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "from_address": "shop@example.com",
        "bounce_token": token,
    }
    assert (
        client.put("/v1/channels/email", json={"provider": "smtp", "config": config}).status_code
        == 200
    )
    client.post("/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.net"}})
    sent = client.post(
        "/v1/messages",
        json={
            "to": {"userId": "ada"},
            "channel": "email",
            "content": {"subject": "Hi", "text": "Hello"},
        },
    )

    class Accepting:  # stands in for the SMTP server having accepted the message
        name = "smtp"

        async def send(self, message):  # type: ignore[no-untyped-def]
            return SendResult("<4f1c9a2e@junction.example.com>")

        async def aclose(self) -> None:
            return None

    asyncio.run(Dispatcher(database, clock, adapters={"smtp": Accepting()}).drain())  # type: ignore[dict-item]
    forged = client.post(f"/hooks/{tenant.id}/smtp?token=wrong", content=dsn())
    assert forged.status_code == 403
    answer = client.post(f"/hooks/{tenant.id}/smtp?token={token}", content=dsn())
    assert answer.json() == {"received": 1, "applied": 1}
    message = client.get(f"/v1/messages/{sent.json()['id']}").json()
    assert message["status"] == "bounced"
    assert client.get("/v1/contacts/ada").json()["addresses"][0]["status"] == "bounced"
    with database.read() as conn:
        assert conn.execute(messages.select()).one().status == "bounced"
