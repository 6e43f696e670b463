"""The dev inbox, in a real browser: captured messages, per channel, for each person."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx

from junction.api.app import create_app
from junction.clock import SystemClock
from junction.engine.dispatcher import Dispatcher
from tests.browser import browser  # noqa: F401 - the fixture
from tests.e2e.server import serving


def test_captured_messages_show_per_channel(settings, database, tenant, browser) -> None:  # noqa: F811
    with (
        serving(create_app(settings, database, SystemClock())) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant.key}"}) as http,
    ):
        traits = {"email": "ada@example.com", "phone": "+33612345678"}
        http.post("/v1/identify", json={"userId": "ada", "traits": traits})
        email = {"subject": "Your receipt", "text": "Thanks!", "html": "<p>Thanks <b>Ada</b>!</p>"}
        http.post(
            "/v1/messages", json={"to": {"userId": "ada"}, "channel": "email", "content": email}
        )
        http.post(
            "/v1/messages",
            json={"to": {"userId": "ada"}, "channel": "sms", "content": {"text": "Code 4242"}},
        )
        # Playwright's sync API owns this thread's event loop: dispatch on another thread.
        with ThreadPoolExecutor(1) as pool:
            assert (
                pool.submit(asyncio.run, Dispatcher(database, SystemClock()).drain()).result() == 2
            )

        context = browser.new_context(http_credentials={"username": tenant.key, "password": ""})
        page = context.new_page()
        page.goto(f"{url}/dev/inbox")
        assert page.locator("article").count() == 2
        assert page.locator("article[data-channel=email] .subject").inner_text() == "Your receipt"
        frame = page.frame_locator("article[data-channel=email] iframe")
        assert frame.locator("b").inner_text() == "Ada"
        page.get_by_role("link", name="sms").click()
        assert page.locator("article").count() == 1
        assert "Code 4242" in page.locator("article").inner_text()
        assert page.locator("article .to").inner_text() == "+33612345678"
        context.close()


def test_the_dev_inbox_asks_for_a_key(settings, database, tenant) -> None:
    with serving(create_app(settings, database, SystemClock())) as url:
        answer = httpx.get(f"{url}/dev/inbox")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Junction"'


def test_each_message_shows_why_it_went_where_it_went(settings, database, tenant, browser) -> None:  # noqa: F811
    with (
        serving(create_app(settings, database, SystemClock())) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant.key}"}) as http,
    ):
        http.post(
            "/v1/identify",
            json={"userId": "bia", "traits": {"phone": "+5511987654321", "country": "BR"}},
        )
        template = {
            "key": "hello",
            "channels": {"sms": {"text": "Oi"}, "whatsapp": {"text": "Oi"}},
        }
        assert http.post("/v1/templates", json=template).status_code == 201
        http.put("/v1/topics/news", json={"name": "News"})
        http.put(
            "/v1/contacts/bia/preferences",
            json={"preferences": [{"topic": "*", "channel": "sms", "optedIn": False}]},
        )
        http.post(
            "/v1/messages",
            json={
                "to": {"userId": "bia"},
                "channel": "sms",
                "template": "hello",
                "category": "news",
            },
        )
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, Dispatcher(database, SystemClock()).drain()).result()
        page = browser.new_page(extra_http_headers={"Authorization": f"Bearer {tenant.key}"})
        page.goto(f"{url}/dev/inbox")
        article = page.locator("article[data-channel=sms]")
        assert "suppressed" in article.locator(".meta").inner_text()
        assert "sms opted out" in article.locator(".why").inner_text()
        page.close()
