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
    assert answer.json() == {"received": 1, "applied": 1, "inbound": 0}
    message = client.get(f"/v1/messages/{sent.json()['id']}").json()
    assert message["status"] == "bounced"
    assert client.get("/v1/contacts/ada").json()["addresses"][0]["status"] == "bounced"
    with database.read() as conn:
        assert conn.execute(messages.select()).one().status == "bounced"


def test_an_inbound_sms_lands_on_its_sender_once(client: TestClient, database, tenant) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from junction.store.tables import contacts, events
    from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, twilio_signature

    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15017122661"}
    assert (
        client.put(
            "/v1/channels/sms", json={"provider": "twilio_sms", "config": config}
        ).status_code
        == 200
    )
    client.post("/v1/identify", json={"userId": "ada", "traits": {"phone": "+33612345678"}})
    url = f"http://testserver/hooks/{tenant.id}/twilio_sms"

    def post(sender: str, sid: str, text: str, signature: str | None = None):  # type: ignore[no-untyped-def]
        form = {
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": "+15017122661",
            "Body": text,
            "SmsStatus": "received",
        }
        signed = signature or twilio_signature(AUTH_TOKEN, url, form)
        return client.post(url, data=form, headers={"X-Twilio-Signature": signed})

    assert post("+33612345678", "SM1", "Is my order shipped?").json()["inbound"] == 1
    assert post("+33612345678", "SM1", "Is my order shipped?").status_code == 200  # redelivered
    assert post("+447700900123", "SM2", "Hello?").status_code == 200  # a stranger
    assert post("+33612345678", "SM3", "forged", signature="bm9wZQ==").status_code == 403

    received = [
        e
        for e in client.get("/v1/contacts/ada").json()["latestEvents"]
        if e["name"] == "message.received"
    ]
    assert [e["properties"]["text"] for e in received] == ["Is my order shipped?"]
    with database.read() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 2
        texts = (
            conn.execute(select(events.c.properties).where(events.c.name == "message.received"))
            .scalars()
            .all()
        )
    assert sorted(p["text"] for p in texts) == ["Hello?", "Is my order shipped?"]


def test_junk_at_any_hook_is_a_4xx_never_a_500(settings, database, clock, tenant) -> None:  # type: ignore[no-untyped-def]
    from hypothesis import HealthCheck, given
    from hypothesis import settings as run
    from hypothesis import strategies as st

    from junction.api.app import create_app
    from junction.store.providers import set_channel_provider
    from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

    with database.write() as conn:
        set_channel_provider(
            conn,
            tenant.id,
            "sms",
            "twilio_sms",
            {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "from_number": "+15017122661",
            },
            clock.now(),
        )
        set_channel_provider(
            conn,
            tenant.id,
            "email",
            "smtp",
            {
                "host": "127.0.0.1",
                "from_address": "shop@example.com",
                "bounce_token": "bounce-token-0123456789",
            },
            clock.now(),
        )
    client = TestClient(create_app(settings, database, clock), raise_server_exceptions=False)
    hooks = [
        f"/hooks/{tenant.id}/twilio_sms",
        f"/hooks/{tenant.id}/smtp?token=bounce-token-0123456789",
    ]

    @run(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        hook=st.sampled_from(hooks),
        body=st.binary(max_size=2000),
        signature=st.text(max_size=40),
        kind=st.sampled_from(
            ["application/x-www-form-urlencoded", "message/rfc822", "application/json"]
        ),
    )
    def junk(hook: str, body: bytes, signature: str, kind: str) -> None:
        answer = client.post(
            hook,
            content=body,
            headers={
                "Content-Type": kind,
                "X-Twilio-Signature": signature.encode("ascii", "ignore").decode(),
            },
        )
        assert answer.status_code < 500, (hook, body, answer.text)

    junk()
    client.close()
