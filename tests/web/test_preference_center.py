"""The hosted preference center, in a real browser: a person opens their signed link on a
phone, changes their choices, and finds them kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from junction.api.app import create_app
from junction.clock import SystemClock
from junction.render.personalise import Links
from junction.store.identity import find_contact_id
from junction.store.preferences import choices_of
from tests.browser import browser  # noqa: F401 - the fixture
from tests.e2e.server import serving

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@contextmanager
def center(settings, database, tenant, locale: str | None = None) -> Iterator[tuple[str, Any]]:  # type: ignore[no-untyped-def]
    """A running Junction with Ada (email and phone) and two topics; yields (url, link)."""
    with (
        serving(create_app(settings, database, SystemClock())) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant.key}"}) as http,
    ):
        traits = {"email": "ada@example.com", "phone": "+33612345678"}
        if locale:
            traits["locale"] = locale
        http.post("/v1/identify", json={"userId": "ada", "traits": traits}).raise_for_status()
        http.put("/v1/topics/news", json={"name": "Newsletter"}).raise_for_status()
        http.put(
            "/v1/topics/offers",
            json={"name": "Offers", "defaultOptIn": False, "channels": ["email"]},
        ).raise_for_status()
        yield url, Links(settings.resolved_secret_key().encode(), url)


def _ada(database, tenant) -> int:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        found = find_contact_id(conn, tenant.id, "ada")
    assert found is not None
    return found


def _choices(database, contact_id: int) -> dict[tuple[str, str], bool]:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        return choices_of(conn, [contact_id]).get(contact_id, {})


def _in_an_hour() -> int:
    return int(time.time()) + 3600


def test_a_person_changes_their_choices_on_a_phone(settings, database, tenant, browser) -> None:  # noqa: F811
    with center(settings, database, tenant) as (_, links):
        ada = _ada(database, tenant)
        context = browser.new_context(**PHONE)
        page = context.new_page()
        page.goto(links.preferences_url(tenant.id, ada, _in_an_hour()))
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("script").count() == 0
        assert page.get_by_role("heading", level=1).inner_text() == "Your communication preferences"
        assert page.locator("fieldset.topic legend").all_inner_texts() == ["Newsletter", "Offers"]
        news = page.locator("fieldset[data-topic=news] input[type=checkbox]")
        assert [news.nth(i).get_attribute("value") for i in range(news.count())] == [
            "news:email",
            "news:sms",
            "news:whatsapp",
            "news:in_app",
        ]
        assert page.locator('input[type=checkbox][value="news:email"]').is_checked()
        assert not page.locator(
            'input[type=checkbox][value="offers:email"]'
        ).is_checked()  # default: out
        assert page.get_by_label("Unsubscribe from all marketing on SMS").count() == 1

        page.locator('input[type=checkbox][value="news:email"]').uncheck()
        page.get_by_role("button", name="Save my preferences").click()
        assert "Saved" in page.get_by_role("status").inner_text()

        page.goto(links.preferences_url(tenant.id, ada, _in_an_hour()))
        assert page.get_by_role("status").count() == 0
        assert not page.locator('input[type=checkbox][value="news:email"]').is_checked()
        assert page.locator('input[type=checkbox][value="news:sms"]').is_checked()
        context.close()

    stored = _choices(database, ada)
    assert stored[("news", "email")] is False
    assert stored[("news", "sms")] is True
    assert stored[("offers", "email")] is False
    assert stored[("*", "email")] is True  # the global box was shown, unticked


def test_a_french_contact_reads_french(settings, database, tenant, browser) -> None:  # noqa: F811
    with center(settings, database, tenant, locale="fr-FR") as (_, links):
        context = browser.new_context(**PHONE, locale="en-US")
        page = context.new_page()
        page.goto(links.preferences_url(tenant.id, _ada(database, tenant), _in_an_hour()))
        assert page.locator("html").get_attribute("lang") == "fr"
        assert page.get_by_role("heading", level=1).inner_text() == (
            "Vos préférences de communication"
        )
        assert page.get_by_label("Se désabonner de tout le marketing par E-mail").count() == 1
        page.get_by_role("button", name="Enregistrer mes préférences").click()
        assert "Enregistré" in page.get_by_role("status").inner_text()
        context.close()


def test_it_works_without_javascript(settings, database, tenant, browser) -> None:  # noqa: F811
    with center(settings, database, tenant) as (_, links):
        ada = _ada(database, tenant)
        context = browser.new_context(**PHONE, java_script_enabled=False)
        page = context.new_page()
        page.goto(links.preferences_url(tenant.id, ada, _in_an_hour()))
        page.get_by_label("Unsubscribe from all marketing on SMS").check()
        page.locator('input[type=checkbox][value="offers:email"]').check()
        page.get_by_role("button", name="Save my preferences").click()
        assert "Saved" in page.get_by_role("status").inner_text()
        assert page.get_by_label("Unsubscribe from all marketing on SMS").is_checked()
        context.close()
    stored = _choices(database, ada)
    assert stored[("*", "sms")] is False
    assert stored[("offers", "email")] is True


def test_tampered_and_expired_links_are_refused(settings, database, tenant, browser) -> None:  # noqa: F811
    with center(settings, database, tenant) as (url, links):
        ada = _ada(database, tenant)
        good = links.preferences_url(tenant.id, ada, _in_an_hour())
        tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
        expired = links.preferences_url(tenant.id, ada, int(time.time()) - 60)
        forged = Links(b"another secret", url).preferences_url(tenant.id, ada, _in_an_hour())
        context = browser.new_context(**PHONE)
        page = context.new_page()
        for link in (tampered, expired, forged, f"{url}/p/not-a-token"):
            answer = page.goto(link)
            assert answer is not None and answer.status == 404
            assert page.get_by_role("heading", level=1).inner_text() == (
                "This link is invalid or has expired"
            )
            assert "latest link" in page.content()
        context.close()
        for link in (tampered, expired, forged):
            form = {"shown": "*:email", "stop": "email"}
            assert httpx.post(link, data=form).status_code == 404
    assert _choices(database, ada) == {}


def test_a_cross_site_post_is_refused(settings, database, tenant) -> None:
    with center(settings, database, tenant) as (_, links):
        ada = _ada(database, tenant)
        link = links.preferences_url(tenant.id, ada, _in_an_hour())
        form = {"shown": "*:email", "stop": "email"}
        evil = httpx.post(link, data=form, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        scripted = httpx.post(link, data=form, headers={"Sec-Fetch-Site": "cross-site"})
        assert scripted.status_code == 403
        assert _choices(database, ada) == {}
        # The person's own page (same origin) is let through.
        origin = link.split("/p/")[0]
        ours = httpx.post(link, data=form, headers={"Origin": origin})
        assert ours.status_code == 303
    assert _choices(database, ada)[("*", "email")] is False
