"""The 24-hour window: free text inside it, templates outside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from junction.domain.sessions import check_session, window_open

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_the_window_is_24_hours_from_the_last_inbound_message() -> None:
    assert window_open(NOW - timedelta(hours=23, minutes=59), NOW, 24)
    assert not window_open(NOW - timedelta(hours=24), NOW, 24)
    assert not window_open(None, NOW, 24)


def test_free_text_outside_the_window_is_refused_with_the_reason() -> None:
    [error] = check_session("whatsapp", {"text": "Hi"}, NOW - timedelta(days=2), NOW)
    assert error.field == "content.text" and "approved template" in error.message
    assert "never written" in check_session("whatsapp", {"text": "Hi"}, None, NOW)[0].message


def test_templates_and_other_channels_are_not_held_to_it() -> None:
    template = {"template": {"name": "order_update", "language": "en"}}
    assert check_session("whatsapp", template, None, NOW) == []
    assert check_session("sms", {"text": "Hi"}, None, NOW) == []
    assert check_session("whatsapp", {"text": "Hi"}, NOW - timedelta(hours=1), NOW) == []


def test_messenger_tags_may_go_outside_the_window() -> None:
    [error] = check_session("messenger", {"text": "Hi"}, None, NOW)
    assert "message tag" in error.message
    assert (
        check_session("messenger", {"text": "Shipped", "tag": "POST_PURCHASE_UPDATE"}, None, NOW)
        == []
    )
