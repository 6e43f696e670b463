"""Provider callbacks: checked by the provider's adapter, then applied forward only."""

from __future__ import annotations

import json

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
    """Junk, unsigned or correctly signed, at every provider's hook: a 4xx, never a 500."""
    import hashlib
    import hmac

    from hypothesis import HealthCheck, given
    from hypothesis import settings as run
    from hypothesis import strategies as st

    from junction.api.app import create_app
    from junction.store.providers import set_channel_provider
    from tests.channels import test_messenger, test_telegram, test_whatsapp
    from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN

    meta = {"app_secret": "meta-app-secret-0123", "verify_token": "verify-0123456789"}
    providers = {
        "sms": (
            "twilio_sms",
            {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15017122661"},
        ),
        "email": (
            "smtp",
            {
                "host": "127.0.0.1",
                "from_address": "shop@example.com",
                "bounce_token": "bounce-token-0123456789",
            },
        ),
        "telegram": (
            "telegram",
            {"bot_token": test_telegram.BOT_TOKEN, "webhook_secret": test_telegram.SECRET},
        ),
        "whatsapp": (
            "whatsapp",
            {
                "access_token": test_whatsapp.ACCESS_TOKEN,
                "phone_number_id": test_whatsapp.PHONE_NUMBER_ID,
                **meta,
            },
        ),
        "messenger": ("messenger", {"page_access_token": test_messenger.PAGE_ACCESS_TOKEN, **meta}),
    }
    with database.write() as conn:
        for channel, (provider, config) in providers.items():
            set_channel_provider(conn, tenant.id, channel, provider, config, clock.now())
    client = TestClient(create_app(settings, database, clock), raise_server_exceptions=False)

    def signing(provider: str, body: bytes) -> dict[str, str]:
        """The headers that make junk pass the signature check, so the parser meets it."""
        if provider in ("whatsapp", "messenger"):
            digest = hmac.new(meta["app_secret"].encode(), body, hashlib.sha256).hexdigest()
            return {"X-Hub-Signature-256": f"sha256={digest}"}
        if provider == "telegram":
            return {"X-Telegram-Bot-Api-Secret-Token": test_telegram.SECRET}
        return {}

    hooks = {
        "twilio_sms": f"/hooks/{tenant.id}/twilio_sms",
        "smtp": f"/hooks/{tenant.id}/smtp?token=bounce-token-0123456789",
        "telegram": f"/hooks/{tenant.id}/telegram",
        "whatsapp": f"/hooks/{tenant.id}/whatsapp",
        "messenger": f"/hooks/{tenant.id}/messenger",
    }
    junk_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode())

    @run(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        provider=st.sampled_from(sorted(hooks)),
        body=st.binary(max_size=2000) | junk_json,
        signed=st.booleans(),
        signature=st.text(max_size=40),
    )
    def junk(provider: str, body: bytes, signed: bool, signature: str) -> None:
        headers = (
            signing(provider, body)
            if signed
            else {
                "X-Twilio-Signature": signature.encode("ascii", "ignore").decode(),
                "X-Hub-Signature-256": signature.encode("ascii", "ignore").decode(),
            }
        )
        answer = client.post(hooks[provider], content=body, headers=headers)
        assert answer.status_code < 500, (provider, body, answer.text)

    junk()
    client.close()
