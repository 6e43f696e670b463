"""A journey's webhook step calls out, signed, and its JSON answer reaches the steps after it
as ``{{ data.<step id> }}``."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request

from junction.engine.dispatcher import Dispatcher
from junction.store.providers import set_channel_provider
from tests.e2e.server import serving

COUPONS = FastAPI()
CALLS: list[dict[str, Any]] = []


@COUPONS.post("/coupon")
async def coupon(request: Request) -> dict[str, str]:
    CALLS.append({"signed": "webhook-signature" in request.headers, "body": await request.json()})
    return {"code": "WELCOME-42"}


def test_a_webhook_answer_is_used_by_a_later_step(client, database, clock, tenant) -> None:
    CALLS.clear()
    with serving(COUPONS) as url, database.write() as conn:
        secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        set_channel_provider(conn, tenant.id, "webhook", "webhook", {"secret": secret}, clock.now())
    with serving(COUPONS) as url:
        journey = {
            "key": "welcome",
            "name": "Welcome",
            "trigger": {"api": True},
            "steps": [
                {"id": "hook", "type": "webhook", "url": f"{url}/coupon", "next": "pause"},
                {
                    "id": "pause",
                    "type": "wait",
                    "duration": {"amount": 1, "unit": "minutes"},
                    "next": "text",
                },
                {
                    "id": "text",
                    "type": "send",
                    "channel": "sms",
                    "template": "code",
                    "next": None,
                },
            ],
        }
        template = {"key": "code", "channels": {"sms": {"text": "Your code: {{ data.hook.code }}"}}}
        assert client.post("/v1/templates", json=template).status_code == 201
        assert client.post("/v1/journeys", json=journey).status_code == 201
        client.post("/v1/journeys/welcome/activate")
        client.post("/v1/identify", json={"userId": "ada", "traits": {"phone": "+33612345678"}})
        entered = client.post("/v1/journeys/welcome/entries", json={"userId": "ada"})
        assert entered.status_code == 202, entered.text
        asyncio.run(Dispatcher(database, clock, journey_grace=timedelta(0)).drain())
        assert len(CALLS) == 1 and CALLS[0]["signed"]
        clock.advance(timedelta(minutes=2))
        asyncio.run(Dispatcher(database, clock, journey_grace=timedelta(0)).drain())
    sent = client.get("/v1/messages", params={"user_id": "ada"}).json()["messages"]
    [text] = [m for m in sent if m["channel"] == "sms"]
    [call] = [m for m in sent if m["channel"] == "webhook"]
    assert call["details"]["response"] == {"code": "WELCOME-42"}
    assert text["channel"] == "sms" and text["status"] == "sent"
    assert text["details"]["rendered"]["text"] == "Your code: WELCOME-42"
