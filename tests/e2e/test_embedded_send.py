"""The embedded set-up sends what it queues: API and dispatcher in one running server."""

from __future__ import annotations

import time

import httpx

from junction.api.app import create_app
from junction.clock import SystemClock
from tests.e2e.server import serving


def test_a_queued_message_goes_out_without_a_separate_worker(settings, database, tenant) -> None:
    app = create_app(settings, database, SystemClock(), run_dispatcher=True)
    with (
        serving(app) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant.key}"}) as http,
    ):
        queued = http.post(
            "/v1/messages",
            json={
                "to": {"email": "ada@example.com"},
                "channel": "email",
                "content": {"subject": "Welcome", "text": "Hello Ada"},
            },
        )
        assert queued.status_code == 202
        status, deadline = "queued", time.monotonic() + 10
        while status != "sent" and time.monotonic() < deadline:  # poll the API as a user would
            status = http.get(f"/v1/messages/{queued.json()['id']}").json()["status"]
            time.sleep(0.05)
        assert status == "sent"
