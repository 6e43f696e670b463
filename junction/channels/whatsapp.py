"""WhatsApp: text and template messages through Meta's Cloud API, and its signed webhooks.

Rules kept here (https://developers.facebook.com/docs/whatsapp/cloud-api):
- each send is one ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with the
  access token as a Bearer token, JSON, through one ``httpx`` client per adapter;
- the address is an E.164 number (``+14155550100``), sent without its ``+``; anything else is
  an invalid address and nothing is sent;
- ``content.text`` is a free-text ("session") message, allowed only within 24 hours of the
  person's last message (the window rule is kept in ``junction.domain``);
  ``content.template`` (``{"name", "language", "parameters": [...]}``) is an approved template,
  allowed at any time; its parameters fill the body's ``{{1}}``, ``{{2}}``…;
- ``{"messages": [{"id": "wamid…"}]}`` is a sent message, recorded by that id;
- Graph API errors (``{"error": {"message", "code", "error_subcode"…}}``) become Junction's,
  by code: 131047 (more than 24 h since the person last wrote) fails for good and says to send
  a template; 131026 (not a WhatsApp user, or cannot receive) marks the address ``invalid``;
  131049 (Meta's per-user marketing limit) is retried in a day; 131056 (too many messages to
  one number) in a minute; 130429, 80007, 80004 and 4 (rate limits), 131000, 131016 and 5xx
  are retried; 190 (the token expired or is wrong) and every other 4xx fail for good. The
  code is in every reason;
- the Cloud API takes no idempotency key: a retry after a timeout may send twice;
- webhooks (``CallingBack`` and ``Receiving``) are accepted only when
  ``X-Hub-Signature-256`` is ``sha256=`` the HMAC-SHA256 of the raw body keyed with the
  app secret (compared in constant time). ``value.statuses`` give delivery updates,
  ``value.messages`` inbound messages, deduplicated on ``whatsapp:{wamid}``. Any bytes
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
PHONE_NUMBER_ID = r"^[0-9]{1,30}$"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_TEXT = 4096  # characters of a text message's body
MAX_REASON_CHARACTERS = 200  # of Meta's message, quoted in the stored error
STATUSES = frozenset({"sent", "delivered", "read", "failed"})

RE_ENGAGEMENT = 131047
UNDELIVERABLE = 131026
MARKETING_LIMIT = 131049
PAIR_RATE_LIMIT = 131056
RATE_LIMITS = frozenset({130429, 80007, 80004, 4})
PASSING = frozenset({131000, 131016})
TOKEN_INVALID = 190


class WhatsAppConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "app_secret", "verify_token"}
    )

    access_token: str = Field(min_length=1, max_length=1000, description="a system user token")
    phone_number_id: str = Field(pattern=PHONE_NUMBER_ID, description="the sending number's id")
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


class WhatsAppAdapter:
    name: ClassVar[str] = "whatsapp"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WHATSAPP})
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=MAX_TEXT, two_way=True, opt_in_required=True, session_window_hours=24
    )
    Config: ClassVar[type[ProviderConfig]] = WhatsAppConfig

    def __init__(self, config: WhatsAppConfig) -> None:
        self.config = config
        self._client = LazyClient(
            config.base_url,
            config.timeout,
            headers={"Authorization": f"Bearer {config.access_token}"},
        )

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        to = message.to.strip()
        if not E164.fullmatch(to):
            raise AddressInvalid(
                f"{message.to!r} is not a phone number in E.164 form (+14155550100)", "invalid"
            )
        payload = _request(to[1:], message.content)
        path = f"/{self.config.api_version}/{self.config.phone_number_id}/messages"
        try:
            response = await self._http().post(path, json=payload)
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"WhatsApp did not answer within {self.config.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(f"cannot reach WhatsApp: {type(error).__name__}") from None
        body = json_object(response)
        if not response.is_success or "error" in body:
            raise _error(response, body)
        messages = body.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        kind = payload["type"]
        if not isinstance(wamid, str) or not wamid:
            return SendResult(provider_message_id=None, details={"type": kind})
        return SendResult(provider_message_id=wamid, details={"type": kind})

    # -- webhooks ----------------------------------------------------------------------

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        return meta.verify_subscription(self.config.verify_token, params, "WhatsApp")

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, url: str = ""
    ) -> list[DeliveryUpdate]:
        """The delivery updates (``value.statuses``) of one signed webhook post."""
        return [update for value in self._values(headers, body) for update in _statuses(value)]

    def parse_inbound(
        self, headers: Mapping[str, str], body: bytes, url: str = ""
    ) -> list[InboundMessage]:
        """The messages people sent (``value.messages``) in one signed webhook post."""
        return [message for value in self._values(headers, body) for message in _inbound(value)]

    def _values(self, headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
        self._check_signature(headers, body)
        return values_of(body)

    def _check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        meta.check_signature(self.config.app_secret, headers, body, "WhatsApp")


def _request(to: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The Cloud API's JSON body for a message's content."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    }
    template = content.get("template")
    if template is not None:
        return payload | {"type": "template", "template": _template(template)}
    text = content.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PermanentFailure("a whatsapp message needs content.text or content.template")
    if len(text) > MAX_TEXT:
        raise PermanentFailure(
            f"the text is {len(text)} characters; WhatsApp takes at most {MAX_TEXT}"
        )
    return payload | {"type": "text", "text": {"body": text}}


def _template(template: Any) -> dict[str, Any]:
    if not isinstance(template, Mapping):
        raise PermanentFailure("content.template must be {name, language, parameters}")
    name, language = template.get("name"), template.get("language")
    parameters = template.get("parameters", [])
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
        raise PermanentFailure("content.template.name must be an approved template's name")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}(_[A-Za-z]{2,4})?", language):
        raise PermanentFailure("content.template.language must be a code such as en or en_US")
    if not isinstance(parameters, list) or not all(
        isinstance(p, str | int | float) and not isinstance(p, bool) for p in parameters
    ):
        raise PermanentFailure("content.template.parameters must be a list of texts")
    built: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        built["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]}
        ]
    return built


def _error(response: httpx.Response, body: Mapping[str, Any]) -> DeliveryError:
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    status = response.status_code
    text = error.get("message")
    if not isinstance(text, str) or not text.strip():
        text = response.reason_phrase or "no message"
    details = error.get("error_data")
    if isinstance(details, dict) and isinstance(details.get("details"), str):
        text = f"{text} ({details['details']})"
    reason = f"WhatsApp error {code if code is not None else status}: {text}"
    reason = reason[: MAX_REASON_CHARACTERS + 20]
    if code == RE_ENGAGEMENT:
        return PermanentFailure(
            f"{reason}; more than 24 hours since the person last wrote:"
            " send an approved template instead"
        )
    if code == UNDELIVERABLE:
        return AddressInvalid(reason, "invalid")
    if code == MARKETING_LIMIT:
        return RetryLater(reason, 24 * 3600.0)
    if code == PAIR_RATE_LIMIT:
        return RetryLater(reason, 60.0)
    if code in RATE_LIMITS or status == 429:
        return RetryLater(reason, retry_after(response))
    if code in PASSING or status >= 500 or response.is_success:
        return RetryLater(reason, retry_after(response))
    if code == TOKEN_INVALID or status == 401:
        return PermanentFailure(f"{reason}; check the access_token of this provider")
    return PermanentFailure(reason)


# -- webhooks ------------------------------------------------------------------------------


def _malformed(field: str, message: str) -> MalformedBody:
    return MalformedBody(FieldError(field, message))


def values_of(body: bytes) -> list[dict[str, Any]]:
    """Each ``entry[].changes[].value`` of the ``messages`` field, or ``MalformedBody``."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise _malformed("body", "not JSON: WhatsApp posts a notification object") from None
    if not isinstance(envelope, dict):
        raise _malformed("body", "not a notification object")
    if envelope.get("object") != "whatsapp_business_account":
        raise _malformed("object", "must be whatsapp_business_account")
    entries = envelope.get("entry")
    if not isinstance(entries, list):
        raise _malformed("entry", "must be a list")
    values = []
    for i, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise _malformed(f"entry.{i}.changes", "must be a list")
        for j, change in enumerate(changes):
            if not isinstance(change, dict):
                raise _malformed(f"entry.{i}.changes.{j}", "must be an object")
            if change.get("field") != "messages":
                continue  # account updates, template reviews…: nothing for us
            value = change.get("value")
            if not isinstance(value, dict):
                raise _malformed(f"entry.{i}.changes.{j}.value", "must be an object")
            values.append(value)
    return values


def _list(value: Mapping[str, Any], key: str) -> list[Any]:
    found = value.get(key, [])
    if not isinstance(found, list):
        raise _malformed(f"value.{key}", "must be a list")
    return found


def _statuses(value: Mapping[str, Any]) -> list[DeliveryUpdate]:
    updates = []
    for i, status in enumerate(_list(value, "statuses")):
        if not isinstance(status, dict):
            raise _malformed(f"value.statuses.{i}", "must be an object")
        wamid, state = status.get("id"), status.get("status")
        if not isinstance(wamid, str) or not wamid:
            raise _malformed(f"value.statuses.{i}.id", "must be a message id")
        if not isinstance(state, str) or state not in STATUSES:
            raise _malformed(
                f"value.statuses.{i}.status", "must be sent, delivered, read or failed"
            )
        reason = None
        errors = status.get("errors", [])
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, title = errors[0].get("code"), errors[0].get("title")
            message = errors[0].get("message")
            words = title if isinstance(title, str) else message if isinstance(message, str) else ""
            reason = f"WhatsApp error {code}: {words}"[: MAX_REASON_CHARACTERS + 20]
        elif state == "failed":
            reason = "WhatsApp reported the message failed"
        updates.append(DeliveryUpdate(wamid, state, reason, details={"raw": status}))
    return updates


def _inbound(value: Mapping[str, Any]) -> list[InboundMessage]:
    names: dict[str, str] = {}
    for contact in _list(value, "contacts"):
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        wa_id = contact.get("wa_id")
        if isinstance(wa_id, str) and isinstance(name, str) and name:
            names[wa_id] = name
    received = []
    for i, message in enumerate(_list(value, "messages")):
        if not isinstance(message, dict):
            raise _malformed(f"value.messages.{i}", "must be an object")
        sender, wamid = message.get("from"), message.get("id")
        if not isinstance(sender, str) or not re.fullmatch(r"[1-9][0-9]{6,14}", sender):
            raise _malformed(f"value.messages.{i}.from", "must be a phone number")
        if not isinstance(wamid, str) or not wamid:
            raise _malformed(f"value.messages.{i}.id", "must be a message id")
        sent_at = _time(message.get("timestamp"), f"value.messages.{i}.timestamp")
        text: Any = ""
        if message.get("type") == "text":
            body = message.get("text")
            text = body.get("body") if isinstance(body, dict) else None
            if not isinstance(text, str):
                raise _malformed(f"value.messages.{i}.text.body", "must be text")
        received.append(
            InboundMessage(
                channel=Channel.WHATSAPP.value,
                sender_id=f"+{sender}",
                external_id=f"whatsapp:{wamid}",
                text=text,
                sent_at=sent_at,
                sender_name=names.get(sender),
                raw=message,
            )
        )
    return received


def _time(value: Any, field: str) -> datetime:
    try:
        if not isinstance(value, str) or not value.isascii() or not value.isdigit():
            raise ValueError
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        raise _malformed(field, "not a Unix time in seconds") from None
