"""The webhook adapter against a real receiver on loopback, which checks every request the
way docs/channels/webhook.md tells receivers to (the Standard Webhooks reference library)
and answers as each story scripts it; then, through the real dispatcher on both databases,
one message from the send API to the receiver."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from standardwebhooks import Webhook, WebhookVerificationError

from junction.channels import registry
from junction.channels.base import (
    Adapter,
    AddressInvalid,
    Channel,
    DeliveryError,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
    SendResult,
)
from junction.channels.http import MAX_REASON_CHARACTERS
from junction.channels.http import parse_retry_after as retry_after
from junction.channels.webhook import WebhookAdapter
from junction.engine.dispatcher import Dispatcher
from junction.errors import InvalidInput
from junction.store.providers import set_channel_provider
from junction.store.sends import SendRequest, accept, get_message
from tests.channels.sending import send
from tests.e2e.server import serving

HUGE = 50 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)

Script = Callable[[], Awaitable[Response]]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]


class Receiver:
    """A webhook consumer: verifies each request with its secret, records it, and answers
    with the next scripted answer (200 when the script is spent)."""

    def __init__(self) -> None:
        self.secret = new_secret()
        self.url = ""
        self.deliveries: list[Delivery] = []
        self.rejected: list[str] = []
        self.script: deque[Script] = deque()
        self.released = threading.Event()  # lets a hanging answer finish
        self.streamed = 0  # bytes of the huge body handed to the server so far
        self.stream_ended = threading.Event()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                payload = Webhook(self.secret).verify(body, dict(request.headers))
            except WebhookVerificationError as error:
                self.rejected.append(str(error))
                return Response("bad signature", status_code=401)
            self.deliveries.append(Delivery(dict(request.headers), body, payload))
            answer = self.script.popleft() if self.script else self.answer(200)
            return await answer()

        return app

    def answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Script:
        async def respond() -> Response:
            return Response(body, status_code=status, headers=headers)

        return respond

    async def hang(self) -> Response:
        await anyio.to_thread.run_sync(self.released.wait)
        return Response(status_code=200)

    def huge(self, status: int) -> Script:
        async def respond() -> Response:
            return StreamingResponse(self._stream(), status_code=status)

        return respond

    async def _stream(self) -> AsyncIterator[bytes]:
        try:
            while self.streamed < HUGE:
                self.streamed += len(CHUNK)
                yield CHUNK
                # A turn of the event loop per chunk, so the server's watch for the client
                # hanging up gets to stop the stream.
                await asyncio.sleep(0)
        finally:
            self.stream_ended.set()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serving(receiver.app()) as url:
        receiver.url = url + "/hook"
        try:
            yield receiver
        finally:
            receiver.released.set()  # the server waits for answers in progress to end


def message(
    url: str,
    key: str = "api:order-42",
    workspace_id: int = 1,
    **content: Any,
) -> OutboundMessage:
    content.setdefault("data", {"order": 42})
    return OutboundMessage(7, key, workspace_id, Channel.WEBHOOK, url, content)


def adapter(secret: str, **config: Any) -> Adapter:
    return registry.build("webhook", {"secret": secret, **config})


# -- what is sent ----------------------------------------------------------------------------


def test_a_delivery_is_signed_and_carries_the_envelope(receiver) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    [result] = send(adapter(receiver.secret), message(receiver.url))
    after = datetime.now(UTC)
    assert receiver.rejected == []
    [delivery] = receiver.deliveries  # verified by the reference library
    assert delivery.payload["type"] == "message.created"
    assert delivery.payload["data"] == {"order": 42}
    stamped = datetime.fromisoformat(delivery.payload["timestamp"])
    assert before <= stamped <= after
    assert delivery.payload["timestamp"].endswith("Z")
    sent_at = int(delivery.headers["webhook-timestamp"])
    assert int(before.timestamp()) <= sent_at <= after.timestamp()
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.body == (
        b'{"type":"message.created","timestamp":"'
        + delivery.payload["timestamp"].encode()
        + b'","data":{"order":42}}'
    )  # minified, and the bytes signed are the bytes sent
    assert isinstance(result, SendResult)
    assert result.provider_message_id == delivery.headers["webhook-id"]
    assert result.details == {"status": 200}


def test_the_type_is_the_messages_else_the_configured_one(receiver) -> None:
    send(
        adapter(receiver.secret, event_type="shop.order_placed"),
        message(receiver.url, key="a"),
        message(receiver.url, key="b", type="shop.order_paid"),
    )
    assert [d.payload["type"] for d in receiver.deliveries] == [
        "shop.order_placed",
        "shop.order_paid",
    ]


def test_configured_headers_are_sent_but_cannot_replace_the_signature(receiver) -> None:
    send(adapter(receiver.secret, headers={"X-Gateway-Key": "k-123"}), message(receiver.url))
    assert receiver.deliveries[0].headers["x-gateway-key"] == "k-123"
    with pytest.raises(InvalidInput) as caught:
        registry.build(
            "webhook", {"secret": receiver.secret, "headers": {"Webhook-Signature": "x"}}
        )
    assert [e.field for e in caught.value.errors] == ["config.headers"]


def test_every_attempt_of_a_message_carries_the_same_id(receiver) -> None:
    receiver.script.append(receiver.answer(500))
    outcomes = send(
        adapter(receiver.secret),
        message(receiver.url),  # refused with a 500…
        message(receiver.url),  # …and retried by the dispatcher: the same message
        message(receiver.url, key="api:order-43"),
        message(receiver.url, workspace_id=2),  # the same key, from another workspace
    )
    assert [type(o) for o in outcomes] == [RetryLater, SendResult, SendResult, SendResult]
    ids = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert ids[0] == ids[1] and len(set(ids)) == 3
    # The receiver may key its deduplication on it: the spec wants no "." in an id.
    assert all("." not in i for i in ids)


def test_a_receiver_with_another_secret_rejects_the_delivery(receiver) -> None:
    [outcome] = send(adapter(new_secret()), message(receiver.url))
    assert len(receiver.rejected) == 1 and receiver.deliveries == []
    assert isinstance(outcome, PermanentFailure) and outcome.reason.startswith("401")


def test_a_tampered_delivery_does_not_verify(receiver) -> None:
    send(adapter(receiver.secret), message(receiver.url))
    [delivery] = receiver.deliveries
    tampered = delivery.body.replace(b'"order":42', b'"order":43')
    assert tampered != delivery.body
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(tampered, delivery.headers)
    replayed_later = {**delivery.headers, "webhook-timestamp": str(int(time.time()) + 60)}
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(delivery.body, replayed_later)


# -- what the answers mean -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after_seconds"),
    [
        (204, {}, SendResult, None),
        (500, {}, RetryLater, None),
        (502, {}, RetryLater, None),
        (503, {"Retry-After": "7"}, RetryLater, 7.0),
        (429, {"Retry-After": "30"}, RetryLater, 30.0),
        (408, {}, RetryLater, None),
        (410, {}, AddressInvalid, None),
        (400, {}, PermanentFailure, None),
        (404, {}, PermanentFailure, None),
    ],
)
def test_each_status_has_its_outcome(
    receiver, status, headers, expected, retry_after_seconds
) -> None:
    receiver.script.append(receiver.answer(status, b"the receiver's words", headers))
    [outcome] = send(adapter(receiver.secret), message(receiver.url))
    assert type(outcome) is expected
    if isinstance(outcome, DeliveryError):
        assert outcome.reason.startswith(f"{status} ")
        assert "the receiver's words" in outcome.reason
    if isinstance(outcome, RetryLater):
        assert outcome.retry_after == retry_after_seconds
    if isinstance(outcome, AddressInvalid):
        assert outcome.status == "invalid"


def test_retry_after_may_be_an_http_date(receiver) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    receiver.script.append(receiver.answer(429, headers={"Retry-After": later}))
    [outcome] = send(adapter(receiver.secret), message(receiver.url))
    assert isinstance(outcome, RetryLater)
    # Read against the response's Date header: whole seconds, and uvicorn refreshes the one
    # it sends once a second, so it may lag the clock by up to a second.
    assert outcome.retry_after is not None and 110 < outcome.retry_after <= 121


def test_retry_after_readings() -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after(" 5 ", now) == 5.0
    assert retry_after("Fri, 20 Nov 2026 09:01:30 GMT", now) == 90.0
    assert retry_after("Fri, 20 Nov 2026 08:00:00 GMT", now) == 0.0  # already past
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None
    assert retry_after("²", now) is None  # a digit to str.isdigit, not to HTTP
    assert retry_after(None, now) is None


def test_a_redirect_is_not_followed(receiver) -> None:
    receiver.script.append(receiver.answer(307, headers={"Location": receiver.url}))
    [outcome] = send(adapter(receiver.secret), message(receiver.url))
    assert isinstance(outcome, PermanentFailure)
    assert outcome.reason.startswith("307") and receiver.url in outcome.reason
    assert len(receiver.deliveries) == 1  # the redirect's target was never called


def test_an_endpoint_that_does_not_answer_in_time_is_retried(receiver) -> None:
    receiver.script.append(receiver.hang)
    started = time.monotonic()
    [outcome] = send(adapter(receiver.secret, timeout=0.3), message(receiver.url))
    assert time.monotonic() - started < 5
    assert isinstance(outcome, RetryLater) and outcome.reason == "no answer within 0.3 s"
    assert len(receiver.deliveries) == 1  # it had the request; its answer never came


def test_an_endpoint_that_refuses_connections_is_retried() -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        [outcome] = send(adapter(new_secret()), message(f"http://127.0.0.1:{port}/hook"))
    assert isinstance(outcome, RetryLater) and outcome.reason.startswith("could not deliver")


@pytest.mark.parametrize("status", [200, 400])
def test_a_huge_answer_is_not_read(receiver, status) -> None:
    receiver.script.append(receiver.huge(status))
    started = time.monotonic()
    [outcome] = send(adapter(receiver.secret), message(receiver.url))
    assert time.monotonic() - started < 5
    assert type(outcome) is (SendResult if status == 200 else PermanentFailure)
    if isinstance(outcome, PermanentFailure):
        assert outcome.reason == "400 Bad Request: " + "x" * MAX_REASON_CHARACTERS
    # We hung up: the server stopped streaming far short of the 50 MB it meant to send.
    assert receiver.stream_ended.wait(10)
    assert receiver.streamed < HUGE / 2


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/hook", "file:///etc/passwd", "javascript:alert(1)", "http://"]
)
def test_only_http_urls_are_called(url) -> None:
    [outcome] = send(adapter(new_secret()), message(url))
    assert isinstance(outcome, PermanentFailure)


def test_a_message_without_a_data_object_is_refused(receiver) -> None:
    outcomes = send(
        adapter(receiver.secret),
        message(receiver.url, data=[1, 2]),
        message(receiver.url, type="not a type"),
    )
    assert all(isinstance(o, PermanentFailure) for o in outcomes)
    assert receiver.deliveries == []


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.secret"),
        ({"secret": "hunter2hunter2hunter2hunter2"}, "config.secret"),  # no whsec_
        ({"secret": "whsec_not*base64!"}, "config.secret"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "config.secret"),
        ({"secret": new_secret(), "timeout": 0}, "config.timeout"),
        ({"secret": new_secret(), "timeout": 60}, "config.timeout"),
        ({"secret": new_secret(), "event_type": "order paid"}, "config.event_type"),
        ({"secret": new_secret(), "headers": {"X-A": "b\r\nX-Injected: 1"}}, "config.headers"),
        ({"secret": new_secret(), "headers": {"Bad Name": "1"}}, "config.headers"),
        ({"secret": new_secret(), "headers": {"X-A": "café"}}, "config.headers"),
        ({"secret": new_secret(), "headers": {"X-A": " padded"}}, "config.headers"),
        ({"secret": new_secret(), "url": "https://x"}, "config.url"),  # unknown keys
    ],
)
def test_a_bad_configuration_names_its_field(config, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        registry.build("webhook", config)
    assert [e.field for e in caught.value.errors] == [field]
    secret = str(config.get("secret", ""))
    assert not secret or secret not in caught.value.message  # a secret is never echoed


def test_the_configuration_has_defaults_and_shows_no_secret() -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode().rstrip("=")  # unpadded
    built = registry.build("webhook", {"secret": secret})
    assert isinstance(built, WebhookAdapter)
    assert (built.config.timeout, built.config.event_type) == (15.0, "message.created")
    asyncio.run(built.aclose())
    shown = registry.masked("webhook", {"secret": secret, "timeout": 5})
    assert shown["timeout"] == 5 and secret not in str(shown)


# -- through the dispatcher --------------------------------------------------------------------


def test_a_message_sent_through_the_api_reaches_the_receiver_once(
    database, clock, tenant, receiver
) -> None:
    with database.write() as conn:
        set_channel_provider(
            conn, tenant.id, "webhook", "webhook", {"secret": receiver.secret}, clock.now()
        )
        answer = accept(
            conn,
            tenant.id,
            SendRequest(
                channel="webhook", to={"url": receiver.url}, content={"data": {"order": 42}}
            ),
            clock.now(),
        )

    assert asyncio.run(Dispatcher(database, clock).drain()) == 1
    assert receiver.rejected == []
    [delivery] = receiver.deliveries
    assert delivery.payload["data"] == {"order": 42}
    with database.read() as conn:
        sent = get_message(conn, tenant.id, int(answer.body["id"]))
    assert (sent["status"], sent["provider"], sent["attempts"]) == ("sent", "webhook", 1)
    assert sent["providerMessageId"] == delivery.headers["webhook-id"]
    assert sent["details"] == {"status": 200}
    # Nothing is due any more: a second pass sends nothing.
    assert asyncio.run(Dispatcher(database, clock).drain()) == 0
    assert len(receiver.deliveries) == 1
