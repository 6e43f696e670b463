"""A template version compiled, bound for a batch and rendered per person: tracked links,
open pixel, generated text, SMS short links and landing links, header-safe subjects."""

from __future__ import annotations

import re
from typing import Any

import pytest

from junction.domain.templates import TemplateDefinition
from junction.render.personalise import Links, bind, compile_template, with_utm

LINKS = Links(b"secret", "https://j.example")
HTML = """<html><head><style>p { color: #333 }</style></head><body>
<p>Hello {{ contact.first_name }}</p>
{% for item in data.items %}<p>{{ item }}</p>{% endfor %}
<a href="https://shop.example/orders/{{ data.order }}">Your order</a>
<a href='https://shop.example/help'>Help</a> <a href="mailto:help@shop.example">Mail</a>
</body></html>"""


def template(**fields: Any) -> TemplateDefinition:
    return TemplateDefinition.model_validate({"key": "t", **fields})


def render_block(
    definition: TemplateDefinition,
    channel: str,
    contact: dict[str, Any],
    data: dict[str, Any] | None = None,
    message_id: int = 7,
    links: Links | None = LINKS,
) -> Any:
    compiled = compile_template(definition, 1)
    block = compiled.block(channel, contact.get("locale"))
    assert block is not None
    shared = {"data": data or {}, "event": {}, "workspace": {}}
    return bind(block, shared, definition.tracking.utm).render(contact, message_id, links)


def email(**tracking: Any) -> TemplateDefinition:
    return template(
        tracking=tracking,
        channels={"email": {"subject": "Hi {{ contact.first_name }}", "html": HTML}},
    )


def test_links_become_signed_redirects_and_keep_their_targets() -> None:
    out = render_block(
        email(utm={"source": "junction"}),
        "email",
        {"first_name": "Ada"},
        {"order": "A1", "items": []},
    )
    hrefs = re.findall(r'href=["\']([^"\']+)', out.content["html"])
    assert hrefs[:2] == [LINKS.click_url(7, 0), LINKS.click_url(7, 1)]
    assert hrefs[2] == "mailto:help@shop.example"  # not a web link: left alone
    assert out.links == [
        "https://shop.example/orders/A1?utm_source=junction",
        "https://shop.example/help?utm_source=junction",
    ]
    assert LINKS.read(hrefs[0].rsplit("/", 1)[1]) == (7, 0)


def test_the_open_pixel_and_inlined_css() -> None:
    out = render_block(email(), "email", {"first_name": "Ada"}, {"items": []})
    html = out.content["html"]
    assert f'<img src="{LINKS.open_url(7)}"' in html
    assert html.index("<img") < html.index("</body>")
    assert '<p style="color: #333;">Hello Ada</p>' in html
    assert "<style>" not in html


def test_the_text_part_is_derived_from_the_html_with_tracked_links() -> None:
    out = render_block(email(), "email", {"first_name": "Ada"}, {"items": ["x", "y"]})
    text = out.content["text"]
    assert "Hello Ada" in text
    assert f"Your order ({LINKS.click_url(7, 0)})" in text
    assert "\n\n\n" not in text
    assert "x\n\ny" in text


def test_nothing_is_rewritten_when_tracking_is_off() -> None:
    out = render_block(
        email(clicks=False, opens=False), "email", {"first_name": "A"}, {"order": "B2", "items": []}
    )
    assert 'href="https://shop.example/orders/B2"' in out.content["html"]
    assert "<img" not in out.content["html"]
    assert out.links == []


def test_a_preview_shows_links_untracked() -> None:
    out = render_block(
        email(utm={"medium": "email"}),
        "email",
        {"first_name": "A"},
        {"order": "C3", "items": []},
        links=None,
    )
    assert 'href="https://shop.example/orders/C3?utm_medium=email"' in out.content["html"]


@pytest.mark.parametrize("name", ["Ada\r\nBcc: all@example.com", "Ada\nX-Evil: 1", "Ada\r"])
def test_line_breaks_in_a_subject_become_spaces(name: str) -> None:
    out = render_block(email(), "email", {"first_name": name}, {"items": []})
    assert "\r" not in out.content["subject"] and "\n" not in out.content["subject"]
    assert out.content["subject"].startswith("Hi Ada")


def test_sms_urls_become_short_links_and_the_landing_page_its_own() -> None:
    definition = template(
        channels={
            "sms": {
                "text": "{{ contact.first_name }}: https://shop.example/o/{{ data.order }} "
                "or see {{ landing_url }}",
                "landingPage": "offer",
            }
        }
    )
    out = render_block(definition, "sms", {"first_name": "Ada"}, {"order": "Z9"})
    assert out.content["text"] == (f"Ada: {LINKS.click_url(7, 0)} or see {LINKS.click_url(7, 1)}")
    assert out.links == ["https://shop.example/o/Z9", "landing:offer"]


def test_nested_blocks_render_every_string() -> None:
    definition = template(
        channels={
            "whatsapp": {
                "template": {
                    "name": "order_update",
                    "language": "en_US",
                    "parameters": ["{{ contact.first_name }}", "{{ data.order }}"],
                }
            },
            "push": {"body": "Hi {{ contact.first_name }}", "data": {"order": "{{ data.order }}"}},
        }
    )
    out = render_block(definition, "whatsapp", {"first_name": "Ada"}, {"order": "Q1"})
    assert out.content == {
        "template": {"name": "order_update", "language": "en_US", "parameters": ["Ada", "Q1"]}
    }
    push = render_block(definition, "push", {"first_name": "Ada"}, {"order": "Q1"})
    assert push.content == {"body": "Hi Ada", "data": {"order": "Q1"}}


def test_the_contacts_locale_picks_the_variant() -> None:
    definition = template(
        channels={"sms": {"text": "Hello {{ contact.first_name }}"}},
        locales={"fr": {"channels": {"sms": {"text": "Bonjour {{ contact.first_name }}"}}}},
    )
    assert render_block(definition, "sms", {"first_name": "Zoé", "locale": "fr-CA"}).content == {
        "text": "Bonjour Zoé"
    }
    assert render_block(definition, "sms", {"first_name": "Al", "locale": "de"}).content == {
        "text": "Hello Al"
    }


def test_codes_cannot_be_forged_or_reused_for_another_purpose() -> None:
    code = LINKS.code(123456789, 3)
    assert LINKS.read(code) == (123456789, 3)
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    assert LINKS.read(tampered) is None
    assert LINKS.read(code, purpose="open") is None
    assert Links(b"other", "https://j.example").read(code) is None
    assert LINKS.read("short") is None
    assert LINKS.read("!!!!!!!!!!!!") is None


def test_utm_parameters_keep_what_the_link_sets() -> None:
    assert with_utm("https://a.example/p?x=1&utm_source=own", {"source": "j", "medium": "m"}) == (
        "https://a.example/p?x=1&utm_source=own&utm_medium=m"
    )


def test_a_loop_between_table_rows_survives_css_inlining() -> None:
    definition = template(
        tracking={"opens": False},
        channels={
            "email": {
                "subject": "s",
                "html": "<style>td { color: red }</style><table>{% for i in data.items %}"
                "<tr><td>{{ i }}</td></tr>{% endfor %}</table>",
            }
        },
    )
    out = render_block(definition, "email", {}, {"items": ["one", "two", "three"]})
    cells = re.findall(r'<td style="color: red;">(\w+)</td>', out.content["html"])
    assert cells == ["one", "two", "three"]
    assert out.content["text"].split() == ["one", "two", "three"]
