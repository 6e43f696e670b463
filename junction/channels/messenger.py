"""Messenger: text messages to a Facebook Page's people through Meta's Send API, and its
signed webhooks.

Rules kept here (https://developers.facebook.com/docs/messenger-platform/reference/send-api):
- each send is one ``POST {base_url}/{api_version}/me/messages`` with the Page access token
  as a Bearer token (never in the URL, where logs would keep it), JSON, through one ``httpx``
  client per adapter;
- the address is the person's page-scoped id (PSID), digits; anything else is an invalid
  address and nothing is sent;
- ``content.text`` (at most 2,000 characters) goes as ``messaging_type: RESPONSE``, allowed
  within 24 hours of the person's last message (the window rule is kept in
  ``junction.domain``); with ``content.tag`` (``CONFIRMED_EVENT_UPDATE``,
  ``POST_PURCHASE_UPDATE``, ``ACCOUNT_UPDATE`` or ``HUMAN_AGENT``) it goes as
  ``messaging_type: MESSAGE_TAG`` with that tag, allowed outside the window; any other tag
  fails for good before sending;
- ``{"recipient_id", "message_id": "m_…"}`` is a sent message, recorded by that id;
- Graph API errors (``{"error": {"message", "type", "code", "error_subcode"}}``) become
  Junction's: 10 with subcode 2018278 (outside the 24 h window) fails for good and says to
  use an allowed message tag; 551 (the person isn't available) and 100 with subcode 2018001
  (no matching user) mark the address ``invalid``; 200 with subcode 1545041 (the person
  blocked the page or opted out) marks it ``unsubscribed``; 613, 4, 32 and HTTP 429 (rate
  limits), 1200, 2, 5xx and timeouts are retried; 190 (the token expired or is wrong) and
  every other 4xx fail for good. The code is in every reason;
- the Send API takes no idempotency key: a retry after a timeout may send twice;
- webhooks (``CallingBack`` and ``Receiving``) are accepted only when
  ``X-Hub-Signature-256`` is ``sha256=`` the HMAC-SHA256 of the raw body keyed with the
  app secret (compared in constant time). ``messaging[].message`` events are inbound
  messages, deduplicated on ``messenger:{mid}`` (echoes of the page's own sends are
  skipped); ``messaging[].delivery.mids`` give a ``delivered`` update per mid. ``read``
  events are ignored: they carry only a watermark (everything sent before a time was read),
  not the ids of the messages read, and marking every earlier message read would need a
  query this layer does not make. Postbacks, reactions, opt-ins… are ignored. Any bytes
  whatever give results, ``InvalidSignature`` or ``MalformedBody``, never another exception;
- ``verify_subscription`` answers Meta's GET handshake (``hub.mode``, ``hub.verify_token``,
  ``hub.challenge``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field

from junction.channels import meta
from junction.channels.base import (
    AddressInvalid,
    Capabilities,
    Channel,
    DeliveryError,
    DeliveryUpdate,
    InboundMessage,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from junction.channels.http import LazyClient, json_object, retry_after
from junction.errors import FieldError, MalformedBody

HTTP_URL = r"^https?://\S+$"
API_VERSION = r"^v[0-9]{1,3}\.[0-9]{1,3}$"
PSID = re.compile(r"[0-9]{1,32}")
MAX_TEXT = 2000  # characters of a text message
MAX_REASON_CHARACTERS = 200  # of Meta's message, quoted in the stored error
TAGS = frozenset(
    {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"}
)

OUTSIDE_WINDOW = (10, 2018278)
NO_MATCHING_USER = (100, 2018001)
BLOCKED = (200, 1545041)
UNAVAILABLE = 551
RATE_LIMITS = frozenset({613, 4, 32})
PASSING = frozenset({1200, 2})
TOKEN_INVALID = 190


class MessengerConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"page_access_token", "app_secret", "verify_token"}
    )

    page_access_token: str = Field(
        min_length=1, max_length=1000, description="the Page's access token"
    )
    app_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the Meta app's secret: signs webhooks; without it none is accepted",
    )
    verify_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the token given when subscribing the webhook (Meta's GET handshake)",
    )
    base_url: str = Field(
        default="https://graph.facebook.com", pattern=HTTP_URL, description="or a test server"
    )
    api_version: str = Field(default="v21.0", pattern=API_VERSION)
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds for each request")


class MessengerAdapter:
    name: ClassVar[str] = "messenger"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.MESSENGER})
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=MAX_TEXT, two_way=True, session_window_hours=24
    )
    Config: ClassVar[type[ProviderConfig]] = MessengerConfig

    def __init__(self, config: MessengerConfig) -> None:
        self.config = config
        self._client = LazyClient(
            config.base_url,
            config.timeout,
            headers={"Authorization": f"Bearer {config.page_access_token}"},
        )

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        to = message.to.strip()
        if not PSID.fullmatch(to):
            raise AddressInvalid(
                f"{message.to!r} is not a page-scoped id (PSID): digits only", "invalid"
            )
        payload = _request(to, message.content)
        path = f"/{self.config.api_version}/me/messages"
        try:
            response = await self._http().post(path, json=payload)
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"Messenger did not answer within {self.config.timeout:g} s"
                f" ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(f"cannot reach Messenger: {type(error).__name__}") from None
        body = json_object(response)
        if not response.is_success or "error" in body:
            raise _error(response, body)
        details: dict[str, Any] = {"messaging_type": payload["messaging_type"]}
        if "tag" in payload:
            details["tag"] = payload["tag"]
        mid = body.get("message_id")
        if not isinstance(mid, str) or not mid:
            return SendResult(provider_message_id=None, details=details)
        return SendResult(provider_message_id=mid, details=details)

    # -- webhooks ----------------------------------------------------------------------

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        return meta.verify_subscription(self.config.verify_token, params, "Messenger")

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, url: str = ""
    ) -> list[DeliveryUpdate]:
        """A ``delivered`` update for each mid of the ``delivery`` events of one signed post."""
        self._check_signature(headers, body)
        updates = []
        for where, event in events_of(body):
            updates.extend(_deliveries(where, event))
            if "message" in event:
                _inbound(where, event)  # checked, so both parsers refuse the same junk
        return updates

    def parse_inbound(
        self, headers: Mapping[str, str], body: bytes, url: str = ""
    ) -> list[InboundMessage]:
        """The messages people sent (``message`` events) in one signed webhook post."""
        self._check_signature(headers, body)
        received = []
        for where, event in events_of(body):
            _deliveries(where, event)  # checked, so both parsers refuse the same junk
            if "message" in event:
                found = _inbound(where, event)
                if found is not None:
                    received.append(found)
        return received

    def _check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        meta.check_signature(self.config.app_secret, headers, body, "Messenger")


def _request(to: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The Send API's JSON body for a message's content."""
    text = content.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PermanentFailure("a messenger message needs content.text")
    if len(text) > MAX_TEXT:
        raise PermanentFailure(
            f"the text is {len(text)} characters; Messenger takes at most {MAX_TEXT}"
        )
    payload: dict[str, Any] = {"recipient": {"id": to}, "messaging_type": "RESPONSE"}
    tag = content.get("tag")
    if tag is not None:
        if not isinstance(tag, str) or tag not in TAGS:
            raise PermanentFailure(
                f"content.tag {tag!r} is not a message tag Messenger allows: use one of "
                + ", ".join(sorted(TAGS))
            )
        payload |= {"messaging_type": "MESSAGE_TAG", "tag": tag}
    return payload | {"message": {"text": text}}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(response: httpx.Response, body: Mapping[str, Any]) -> DeliveryError:
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    status = response.status_code
    text = error.get("message")
    if not isinstance(text, str) or not text.strip():
        text = response.reason_phrase or "no message"
    label = f"{code}" if code is not None else f"HTTP {status}"
    if code is not None and subcode is not None:
        label = f"{code}/{subcode}"
    reason = f"Messenger error {label}: {text}"[: MAX_REASON_CHARACTERS + 20]
    if (code, subcode) == OUTSIDE_WINDOW:
        return PermanentFailure(
            f"{reason}; outside the 24-hour window: send with an allowed message tag"
            f" (content.tag: {', '.join(sorted(TAGS))})"
        )
    if code == UNAVAILABLE or (code, subcode) == NO_MATCHING_USER:
        return AddressInvalid(reason, "invalid")
    if (code, subcode) == BLOCKED:
        return AddressInvalid(reason, "unsubscribed")
    if code in RATE_LIMITS or status == 429:
        return RetryLater(reason, retry_after(response))
    if code in PASSING or status >= 500 or response.is_success:
        return RetryLater(reason, retry_after(response))
    if code == TOKEN_INVALID or status == 401:
        return PermanentFailure(f"{reason}; check the page_access_token of this provider")
    return PermanentFailure(reason)


# -- webhooks ------------------------------------------------------------------------------


def _malformed(field: str, message: str) -> MalformedBody:
    return MalformedBody(FieldError(field, message))


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Each ``entry[].messaging[]`` event with where it is, or ``MalformedBody``."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise _malformed("body", "not JSON: Messenger posts a notification object") from None
    if not isinstance(envelope, dict):
        raise _malformed("body", "not a notification object")
    if envelope.get("object") != "page":
        raise _malformed("object", "must be page")
    entries = envelope.get("entry")
    if not isinstance(entries, list):
        raise _malformed("entry", "must be a list")
    events = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _malformed(f"entry.{i}", "must be an object")
        messaging = entry.get("messaging", [])  # absent in standby or changes entries
        if not isinstance(messaging, list):
            raise _malformed(f"entry.{i}.messaging", "must be a list")
        for j, event in enumerate(messaging):
            if not isinstance(event, dict):
                raise _malformed(f"entry.{i}.messaging.{j}", "must be an object")
            events.append((f"entry.{i}.messaging.{j}", event))
    return events


def _deliveries(where: str, event: Mapping[str, Any]) -> list[DeliveryUpdate]:
    if "delivery" not in event:
        return []
    delivery = event["delivery"]
    if not isinstance(delivery, dict):
        raise _malformed(f"{where}.delivery", "must be an object")
    mids = delivery.get("mids", [])  # Meta may leave it out: then nothing to apply
    if not isinstance(mids, list):
        raise _malformed(f"{where}.delivery.mids", "must be a list")
    updates = []
    for k, mid in enumerate(mids):
        if not isinstance(mid, str) or not mid:
            raise _malformed(f"{where}.delivery.mids.{k}", "must be a message id")
        updates.append(DeliveryUpdate(mid, "delivered", details={"raw": event}))
    return updates


def _inbound(where: str, event: Mapping[str, Any]) -> InboundMessage | None:
    message = event["message"]
    if not isinstance(message, dict):
        raise _malformed(f"{where}.message", "must be an object")
    mid = message.get("mid")
    if not isinstance(mid, str) or not mid:
        raise _malformed(f"{where}.message.mid", "must be a message id")
    sender = event.get("sender")
    psid = sender.get("id") if isinstance(sender, dict) else None
    if not isinstance(psid, str) or not PSID.fullmatch(psid):
        raise _malformed(f"{where}.sender.id", "must be a page-scoped id")
    sent_at = _time(event.get("timestamp"), f"{where}.timestamp")
    text = message.get("text", "")  # absent when the message is an attachment
    if not isinstance(text, str):
        raise _malformed(f"{where}.message.text", "must be text")
    if message.get("is_echo") is True:
        return None  # the page's own message, echoed back: not something a person sent
    return InboundMessage(
        channel=Channel.MESSENGER.value,
        sender_id=psid,
        external_id=f"messenger:{mid}",
        text=text,
        sent_at=sent_at,
        raw=dict(event),
    )


def _time(value: Any, field: str) -> datetime:
    milliseconds = _int(value)
    try:
        if milliseconds is None or milliseconds < 0:
            raise ValueError
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise _malformed(field, "not a Unix time in milliseconds") from None
