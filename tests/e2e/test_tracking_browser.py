"""Tracked links, open pixels and SMS landing pages, end to end in a real browser.

A template is saved and sent through the API, the dispatcher renders it (the capture provider
keeps the rendered content), and Chromium then does what a person would: shows the email (its
pixel loads), clicks a link (through Junction's signed redirect to a real target server), or
opens an SMS's short link on a phone-sized screen. What Junction records is read back from
the contact's events.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from junction.api.app import create_app
from junction.clock import SystemClock
from junction.engine.dispatcher import Dispatcher
from junction.render.personalise import Links
from junction.settings import Settings
from junction.store.database import Database
from junction.store.tables import events
from tests.browser import browser  # noqa: F401 - the fixture
from tests.e2e.server import serving

MOTTO = "<script>document.title = 'pwned'; window.pwned = true</script>"
TRAITS = {
    "email": "ada@example.com",
    "phone": "+33612345678",
    "first_name": "Ada",
    "motto": MOTTO,
}
PHONE = {"width": 390, "height": 844}


# A site of the sender's own, that tracked links lead to --------------------------------


def target_site(visits: list[dict[str, str]]) -> FastAPI:
    site = FastAPI()

    @site.get("/welcome", response_class=HTMLResponse)
    async def welcome(request: Request) -> str:
        visits.append(dict(request.query_params))
        return "<!doctype html><title>Welcome</title><h1>Welcome</h1>"

    @site.get("/pricing", response_class=HTMLResponse)
    async def pricing(request: Request) -> str:
        return "<!doctype html><title>Pricing</title><h1>Pricing</h1>"

    return site


# Helpers ---------------------------------------------------------------------------------


@contextmanager
def junction(
    settings: Settings, database: Database, key: str
) -> Iterator[tuple[str, httpx.Client]]:
    with (
        serving(create_app(settings, database, SystemClock())) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http,
    ):
        yield url, http


def dispatch(settings: Settings, database: Database, url: str) -> int:
    """Send what is queued, with tracked links pointing at the served app. Playwright's sync
    API owns this thread's event loop, so the dispatcher runs on another thread."""
    links = Links(settings.resolved_secret_key().encode(), url)
    dispatcher = Dispatcher(database, SystemClock(), links=links)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, dispatcher.drain()).result()


def ok(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert answer.status_code in (statuses or (200,)), answer.text
    return answer.json()


def identify(http: httpx.Client) -> None:
    ok(http.post("/v1/identify", json={"userId": "ada", "traits": TRAITS}))


def save_template(http: httpx.Client, definition: dict[str, Any]) -> None:
    ok(http.post("/v1/templates", json=definition), 200, 201)


def send(http: httpx.Client, template: str, channel: str, **extra: Any) -> int:
    body = {"to": {"userId": "ada"}, "channel": channel, "template": template, **extra}
    return int(ok(http.post("/v1/messages", json=body), 202)["id"])


def rendered(http: httpx.Client, message_id: int) -> dict[str, Any]:
    message = ok(http.get(f"/v1/messages/{message_id}"))
    assert message["status"] not in ("suppressed", "dead", "failed"), message
    return message["details"]["rendered"]


def tracking_events(database: Database, message_id: int) -> list[dict[str, Any]]:
    """The contact's message.clicked and message.opened events for one message, oldest first."""
    with database.read() as conn:
        rows = conn.execute(
            select(events.c.name, events.c.properties)
            .where(events.c.name.in_(["message.clicked", "message.opened"]))
            .order_by(events.c.id)
        ).all()
    return [
        {"name": row.name, **row.properties}
        for row in rows
        if str(row.properties.get("messageId")) == str(message_id)
    ]


def all_events(database: Database) -> int:
    with database.read() as conn:
        return len(conn.execute(select(events.c.id)).all())


def welcome_email(target: str) -> dict[str, Any]:
    html = (
        "<html><body><h2>Hello {{ contact.first_name }}</h2>"
        "<p>Order {{ data.order }} is on its way.</p>"
        f'<p><a id="start" href="{target}/welcome">Get started</a></p>'
        f'<p><a id="pricing" href="{target}/pricing">See pricing</a></p>'
        "</body></html>"
    )
    return {
        "key": "welcome",
        "tracking": {"utm": {"source": "junction"}},
        "channels": {"email": {"subject": "Welcome, {{ contact.first_name }}", "html": html}},
    }


def sent_email(
    settings: Settings, database: Database, url: str, http: httpx.Client, target: str
) -> tuple[int, dict[str, Any]]:
    identify(http)
    save_template(http, welcome_email(target))
    message_id = send(http, "welcome", "email", data={"order": "A-42"})
    assert dispatch(settings, database, url) == 1
    return message_id, rendered(http, message_id)


# 1. Email: the open pixel and a tracked link ---------------------------------------------


def test_an_email_records_its_open_and_each_links_first_click(
    settings,
    database,
    tenant,
    browser,  # noqa: F811
) -> None:
    visits: list[dict[str, str]] = []
    with (
        junction(settings, database, tenant.key) as (url, http),
        serving(target_site(visits)) as target,
    ):
        message_id, content = sent_email(settings, database, url, http, target)
        html = content["html"]
        # Links point at Junction's signed redirect, not at the target; the pixel is there.
        assert f'href="{target}' not in html
        assert html.count(f"{url}/l/") == 2
        assert f'src="{url}/o/' in html

        context = browser.new_context()
        page = context.new_page()
        # set_content waits for the load event: images, the open pixel among them, are loaded.
        page.set_content(html)
        assert page.locator("h2").inner_text() == "Hello Ada"
        opened = [e for e in tracking_events(database, message_id) if e["name"] == "message.opened"]
        assert len(opened) == 1
        assert opened[0]["messageId"] == message_id
        assert opened[0]["channel"] == "email"

        welcome = f"{target}/welcome?utm_source=junction"
        page.locator("a#start").click()
        page.wait_for_url(welcome)
        assert page.locator("h1").inner_text() == "Welcome"
        assert visits == [{"utm_source": "junction"}]
        clicked = [
            e for e in tracking_events(database, message_id) if e["name"] == "message.clicked"
        ]
        assert len(clicked) == 1
        assert clicked[0]["messageId"] == message_id
        assert clicked[0]["url"] == welcome
        assert clicked[0]["link"] == 0

        # The same person opens the email again and clicks the same link: it still leads to
        # the target, and Junction records neither a second open nor a second click.
        page.set_content(html)
        page.locator("a#start").click()
        page.wait_for_url(welcome)
        assert page.locator("h1").inner_text() == "Welcome"
        assert len(visits) == 2
        names = [e["name"] for e in tracking_events(database, message_id)]
        assert names == ["message.opened", "message.clicked"]

        # The other link is counted on its own.
        page.set_content(html)
        page.locator("a#pricing").click()
        page.wait_for_url(f"{target}/pricing?utm_source=junction")
        clicked = [
            e for e in tracking_events(database, message_id) if e["name"] == "message.clicked"
        ]
        assert [e["link"] for e in clicked] == [0, 1]

        # The contact API shows the same events.
        latest = ok(http.get("/v1/contacts/ada"))["latestEvents"]
        assert {
            (e["name"], e["properties"].get("link"))
            for e in latest
            if e["name"] in ("message.clicked", "message.opened")
        } == {("message.opened", None), ("message.clicked", 0), ("message.clicked", 1)}
        context.close()

        # `{{ data.* }}` is what POST /v1/messages documents for the send's data.
        assert "Order A-42 is on its way." in html


# 2. SMS: a landing page on a phone -----------------------------------------------------


def test_an_sms_links_to_a_personal_landing_page_where_no_script_runs(
    settings,
    database,
    tenant,
    browser,  # noqa: F811
) -> None:
    with junction(settings, database, tenant.key) as (url, http):
        identify(http)
        save_template(
            http,
            {
                "key": "spring-offer",
                "kind": "landing",
                "page": {
                    "title": "Spring offer",
                    "html": "<h1>Hello {{ contact.first_name }}</h1>"
                    '<p id="motto">{{ contact.motto }}</p>'
                    '<a class="button" href="https://shop.example/spring">Shop now</a>',
                },
            },
        )
        save_template(
            http,
            {
                "key": "spring-sms",
                "channels": {
                    "sms": {
                        "text": "Hi {{ contact.first_name }}, our spring offer: {{ landing_url }}",
                        "landingPage": "spring-offer",
                    }
                },
            },
        )
        message_id = send(http, "spring-sms", "sms")
        assert dispatch(settings, database, url) == 1
        text = rendered(http, message_id)["text"]
        assert text.startswith("Hi Ada, our spring offer: ")
        short = re.search(r"https?://\S+", text)
        assert short is not None, text
        assert short.group(0).startswith(f"{url}/l/")

        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        response = page.goto(short.group(0))
        assert response is not None
        assert response.status == 200
        page.wait_for_load_state("load")
        assert "script-src" not in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert page.locator("h1").inner_text() == "Hello Ada"
        # The trait's markup is shown as text; the script in it never ran.
        assert page.locator("#motto").inner_text() == MOTTO
        assert page.locator("#motto script").count() == 0
        assert page.title() == "Spring offer"
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert errors == []
        # Laid out for the phone: the viewport meta is honoured, nothing overflows sideways.
        assert page.evaluate("window.innerWidth") == PHONE["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        clicked = tracking_events(database, message_id)
        assert len(clicked) == 1
        assert clicked[0]["name"] == "message.clicked"
        assert clicked[0]["messageId"] == message_id
        assert clicked[0]["channel"] == "sms"
        assert clicked[0]["link"] == 0
        assert clicked[0]["url"] == "landing:spring-offer"
        context.close()


# 3. A forged code -----------------------------------------------------------------------


def tampered(code: str) -> str:
    """The code with one character of its signature (the last 8) changed."""
    position = len(code) - 3
    swap = "A" if code[position] != "A" else "B"
    return code[:position] + swap + code[position + 1 :]


def test_a_tampered_code_is_not_found_and_records_nothing(
    settings,
    database,
    tenant,
    browser,  # noqa: F811
) -> None:
    visits: list[dict[str, str]] = []
    with (
        junction(settings, database, tenant.key) as (url, http),
        serving(target_site(visits)) as target,
    ):
        message_id, content = sent_email(settings, database, url, http, target)
        codes = re.findall(rf'href="{re.escape(url)}/l/([^"]+)"', content["html"])
        assert len(codes) == 2
        pixel = re.search(rf'src="{re.escape(url)}/o/([^"]+)\.gif"', content["html"])
        assert pixel is not None
        before = all_events(database)

        context = browser.new_context(viewport=PHONE, is_mobile=True)
        page = context.new_page()
        response = page.goto(f"{url}/l/{tampered(codes[0])}")
        assert response is not None
        assert response.status == 404
        assert page.title() == "Link not found"
        assert page.get_by_text("This link is not valid.").is_visible()
        assert page.url == f"{url}/l/{tampered(codes[0])}"  # no redirect anywhere

        pixel_answer = page.request.get(f"{url}/o/{tampered(pixel.group(1))}.gif")
        assert pixel_answer.status == 404

        assert visits == []
        assert tracking_events(database, message_id) == []
        assert all_events(database) == before

        # The genuine code still works, so the 404 was the signature's doing.
        page.goto(f"{url}/l/{codes[0]}")
        page.wait_for_url(f"{target}/welcome?utm_source=junction")
        assert [e["name"] for e in tracking_events(database, message_id)] == ["message.clicked"]
        context.close()
