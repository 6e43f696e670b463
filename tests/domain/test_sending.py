"""What a send request must hold, per channel."""

from __future__ import annotations

import pytest

from junction.domain.sending import check_category, check_content


@pytest.mark.parametrize(
    ("channel", "content", "fields"),
    [
        ("email", {"subject": "Hi", "text": "Hello"}, []),
        ("email", {"subject": "Hi", "html": "<p>Hello</p>"}, []),
        ("email", {"text": "Hello"}, ["content.subject"]),
        ("email", {"subject": "Hi\r\nBcc: x@y.z", "text": "x"}, ["content.subject"]),
        ("email", {"subject": "Hi"}, ["content.text"]),
        ("sms", {"text": "Your code is 1234"}, []),
        ("sms", {"text": "x" * 1601}, ["content.text"]),
        ("sms", {"text": 5}, ["content.text", "content.text"]),
        ("voice", {}, ["content.text"]),
        ("in_app", {"title": "New", "body": "Look"}, []),
        ("content_card", {"title": "New"}, ["content.body"]),
        ("telegram", {"text": "Hi"}, []),
        ("telegram", {"photo": "https://x.io/p.jpg", "text": "x" * 1025}, ["content.text"]),
        ("telegram", {"photo": "https://x.io/p.jpg", "caption": "x" * 1025}, ["content.caption"]),
        ("telegram", {}, ["content.text"]),
        ("webhook", {"data": {"a": 1}}, []),
        ("webhook", {"data": [1]}, ["content.data"]),
    ],
)
def test_content_must_fit_its_channel(channel, content, fields) -> None:
    assert [e.field for e in check_content(channel, content)] == fields


def test_a_category_is_transactional_or_a_topic_key() -> None:
    assert check_category("transactional") == []
    assert check_category("product-news") == []
    assert [e.field for e in check_category("Product News!")] == ["category"]


def test_messenger_content_and_tags() -> None:
    assert check_content("messenger", {"text": "Hi"}) == []
    assert [e.field for e in check_content("messenger", {"text": "Hi", "tag": "PROMO"})] == [
        "content.tag"
    ]
    assert [e.field for e in check_content("messenger", {"text": "x" * 2001})] == ["content.text"]
