"""The Segment tracking spec, decoded and checked with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from junction.domain import tracking
from junction.domain.tracking import Identify, Track, decode_batch, decode_message, occurred_at
from junction.errors import InvalidInput, MalformedBody, PayloadTooLarge

RECEIVED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def body(value: object) -> bytes:
    return orjson.dumps(value)


def test_a_track_call_decodes_with_segment_field_names() -> None:
    message = decode_message(
        body(
            {
                "userId": "u1",
                "event": "Order Completed",
                "messageId": "m1",
                "properties": {"revenue": 9.5},
                "context": {"ip": "1.2.3.4"},
            }
        ),
        "track",
    )
    assert isinstance(message, Track)
    assert (message.user_id, message.event, message.message_id) == ("u1", "Order Completed", "m1")
    assert message.properties == {"revenue": 9.5}


def test_numeric_ids_are_read_as_strings() -> None:
    message = decode_message(body({"userId": 42, "event": "X"}), "track")
    assert tracking.as_id(message.user_id) == "42"


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"event": "X"}, "userId", "userId or an anonymousId"),
        ({"userId": "u", "event": 3}, "event", "Expected `str`"),
        ({"userId": "u"}, "event", "is required"),
        ({"userId": "u", "event": "  "}, "event", "must name the event"),
        ({"userId": "u", "event": "X", "properties": []}, "properties", "Expected `object"),
        ({"userId": "u", "event": "X", "timestamp": "yesterday"}, "timestamp", "datetime"),
        ({"userId": "u" * 300, "event": "X"}, "userId", "length <= 255"),
        ({"userId": "u", "event": "X" * 300}, "event", "length <= 255"),
    ],
)
def test_a_bad_call_names_the_field_and_the_reason(payload: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_message(body(payload), "track")
    assert [e.field for e in caught.value.errors] == [field]
    assert reason in caught.value.errors[0].message


def test_identify_checks_reserved_traits() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_message(
            body(
                {
                    "userId": "u",
                    "traits": {"email": "no-at-sign", "phone": "12", "timezone": "Mars/Base"},
                }
            ),
            "identify",
        )
    assert {e.field for e in caught.value.errors} == {
        "traits.email",
        "traits.phone",
        "traits.timezone",
    }


def test_alias_needs_both_ids() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_message(body({"previousId": "anon"}), "alias")
    assert [e.field for e in caught.value.errors] == ["userId"]


def test_not_json_is_malformed() -> None:
    with pytest.raises(MalformedBody):
        decode_message(b"{not json", "track")
    with pytest.raises(MalformedBody):
        decode_batch(b'{"batch": [1,')


def test_size_limits_are_segments() -> None:
    big = {"userId": "u", "event": "X", "properties": {"blob": "x" * (32 * 1024)}}
    with pytest.raises(PayloadTooLarge, match="32 KB"):
        decode_message(body(big), "track")
    many = {"batch": [{"type": "track", "userId": "u", "event": "x" * 200}] * 3000}
    with pytest.raises(PayloadTooLarge, match="500 KB"):
        decode_batch(body(many))


def test_a_batch_keeps_good_items_and_reports_each_bad_one_by_index() -> None:
    decoded, sent_at, _ = decode_batch(
        body(
            {
                "batch": [
                    {"type": "track", "userId": "u", "event": "Good"},
                    {"type": "track", "userId": "u"},
                    {"type": "unknown", "userId": "u"},
                    {
                        "type": "identify",
                        "userId": "u",
                        "messageId": "m-bad",
                        "traits": {"email": "x"},
                    },
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "Big",
                        "properties": {"b": "x" * 40000},
                    },
                    {"type": "identify", "userId": "v", "traits": {"plan": "pro"}},
                ],
                "sentAt": "2026-11-20T11:59:59Z",
            }
        )
    )
    assert [type(m) for m in decoded.messages] == [Track, Identify]
    report = {item.index: (item.message_id, item.errors[0]["field"]) for item in decoded.rejected}
    assert report == {
        1: (None, "batch.1.event"),
        2: (None, "batch.2.type"),
        3: ("m-bad", "batch.3.traits.email"),
        4: (None, "batch.4"),
    }
    assert sent_at == datetime(2026, 11, 20, 11, 59, 59, tzinfo=UTC)


def test_a_batch_that_is_not_a_batch_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_batch(body({"events": []}))
    assert caught.value.errors[0].field == "batch"


class TestOccurredAt:
    def test_an_explicit_timestamp_wins(self) -> None:
        message = Track(
            event="X",
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            original_timestamp=RECEIVED,
            sent_at=RECEIVED,
        )
        assert occurred_at(message, RECEIVED) == datetime(2026, 1, 1, tzinfo=UTC)

    def test_a_skewed_client_clock_is_corrected(self) -> None:
        # The client's clock is 1 h fast: it says it made the event 10 s before sending.
        client_sent = RECEIVED + timedelta(hours=1)
        message = Track(
            event="X", original_timestamp=client_sent - timedelta(seconds=10), sent_at=client_sent
        )
        assert occurred_at(message, RECEIVED) == RECEIVED - timedelta(seconds=10)

    def test_the_batch_sent_at_applies_to_its_items(self) -> None:
        client_sent = RECEIVED + timedelta(minutes=5)
        message = Track(event="X", original_timestamp=client_sent - timedelta(seconds=3))
        assert occurred_at(message, RECEIVED, client_sent) == RECEIVED - timedelta(seconds=3)

    def test_no_time_given_means_received(self) -> None:
        assert occurred_at(Track(event="X"), RECEIVED) == RECEIVED

    def test_naive_times_are_utc(self) -> None:
        message = Track(event="X", timestamp=datetime(2026, 1, 1, 8, 0))
        assert occurred_at(message, RECEIVED) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
