"""The live stream tells a connected app about a new in-app message."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx

from junction.api.app import create_app
from junction.clock import SystemClock
from junction.engine.dispatcher import Dispatcher
from tests.e2e.server import serving


def test_a_new_item_arrives_on_the_stream(settings, database, tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    with (
        serving(create_app(settings, database, SystemClock())) as url,
        httpx.Client(base_url=url, headers=headers, timeout=10) as http,
    ):
        http.post("/v1/identify", json={"userId": "ada", "traits": {}})
        received: list[dict] = []
        connected = threading.Event()

        def listen() -> None:
            with http.stream("GET", "/v1/contacts/ada/inbox/stream") as stream:
                connected.set()
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "item":
                        received.append(json.loads(line.split(":", 1)[1]))
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert connected.wait(10)
        http.post(
            "/v1/messages",
            json={
                "to": {"userId": "ada"},
                "channel": "in_app",
                "content": {"title": "Hi", "body": "New feature"},
            },
        )
        asyncio.run(Dispatcher(database, SystemClock()).drain())
        listener.join(timeout=10)
        assert [item["content"]["body"] for item in received] == ["New feature"]
