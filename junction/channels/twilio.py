"""Twilio: SMS through the Messages API, text-to-speech calls through the Calls API.

Rules kept here:
- each send is one ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/{Messages|Calls}.json``,
  form-encoded, with HTTP Basic auth (AccountSid:AuthToken), through one ``httpx`` client per
  adapter: its connections are reused and many sends are in flight at once;
- a 2xx answer is a sent message: Twilio's ``sid`` is the provider message id; an SMS also
  records its encoding and segment count (``junction.domain.sms``), a call its language;
- Twilio's errors become Junction's, by Twilio's error code first, then by HTTP status:
  21211 (invalid To) and 21614 (not a mobile number) mark the address ``invalid``; 21610
  (the recipient texted STOP) marks it ``unsubscribed``; 429 or code 20429, any 5xx, a
  connection error and a timeout are retried, honouring Retry-After; any other 4xx fails for
  good, with Twilio's code and message as the reason;
- a timeout after the request went out may hide a message Twilio did create, and Twilio
  takes no idempotency key: the retry may then send it twice (at-least-once, as documented
  in the dispatcher);
- a call's words are spoken by ``<Say>`` in the language of the message's locale, mapped to
  one Twilio speaks (``fr`` → ``fr-FR``; ``en-US`` when unknown); the TwiML is built, and
  escaped, by Twilio's own library, and must fit Twilio's 4,000-character inline limit;
- status callbacks are accepted only with a valid ``X-Twilio-Signature`` (HMAC-SHA1 of the
  public URL and the sorted form parameters, keyed with the auth token). Twilio sends them
  late, twice and out of order (``sent`` after ``delivered``): this module only translates
  each one; applying them so a status never moves backwards is the caller's job
  (``junction.store.callbacks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from pydantic import Field, ValidationInfo, field_validator
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

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
from junction.channels.http import LazyClient, json_or_none, retry_after
from junction.domain.sms import segment
from junction.errors import InvalidSignature

API_VERSION = "2010-04-01"
E164 = r"^\+[1-9][0-9]{1,14}$"
HTTP_URL = r"^https?://\S+$"
MAX_INLINE_TWIML = 4000  # Twilio error 32018 beyond this

# Twilio error codes that say the address itself is dead, and how to mark it.
ADDRESS_ERRORS: Mapping[int, str] = {
    21211: "invalid",  # invalid 'To' phone number
    21614: "invalid",  # 'To' number is not a valid mobile number
    21610: "unsubscribed",  # the recipient replied STOP
}
RATE_LIMITED = 20429

# Twilio's <Say> languages (the set every Twilio TTS voice family covers), and the region
# used when a locale names only a language or a region Twilio does not speak.
SAY_LANGUAGES = frozenset(
    {
        "ca-ES", "da-DK", "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "es-ES",
        "es-MX", "fi-FI", "fr-CA", "fr-FR", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL",
        "pl-PL", "pt-BR", "pt-PT", "ru-RU", "sv-SE", "zh-CN", "zh-HK", "zh-TW",
    }
)  # fmt: skip
DEFAULT_SAY_REGION: Mapping[str, str] = {
    "ca": "ca-ES", "da": "da-DK", "de": "de-DE", "en": "en-US", "es": "es-ES", "fi": "fi-FI",
    "fr": "fr-FR", "it": "it-IT", "ja": "ja-JP", "ko": "ko-KR", "nb": "nb-NO", "no": "nb-NO",
    "nl": "nl-NL", "pl": "pl-PL", "pt": "pt-BR", "ru": "ru-RU", "sv": "sv-SE", "zh": "zh-CN",
}  # fmt: skip
DEFAULT_SAY_LANGUAGE = "en-US"

# Status callback values → Junction delivery statuses. Values not listed (an inbound
# message's "received", a status Twilio adds later) are ignored.
MESSAGE_STATUSES: Mapping[str, str] = {
    "accepted": "queued",  # taken by a Messaging Service, sender not chosen yet
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",  # handed to the carrier
    "delivered": "delivered",  # the carrier confirmed the handset has it
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",  # a scheduled message canceled before it went
    "read": "read",  # channels with read receipts (WhatsApp, RCS)
}
CALL_STATUSES: Mapping[str, str] = {
    "queued": "queued",
    "initiated": "queued",
    "ringing": "sent",  # the network reached the phone
    "in-progress": "delivered",  # answered: the words are being spoken
    "completed": "delivered",  # answered, then hung up normally
    "busy": "failed",
    "no-answer": "failed",
    "failed": "failed",
    "canceled": "failed",
}
CALL_FAILURES: Mapping[str, str] = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call could not be placed",
    "canceled": "the call was canceled before it was answered",
}
# Delivery errors of status callbacks, for when Twilio sends the code without ErrorMessage.
DELIVERY_ERRORS: Mapping[str, str] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error",
    "30034": "message from an unregistered number (US A2P 10DLC)",
}


class _TwilioAccount(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"auth_token"})

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="AC followed by 32 hex")
    auth_token: str = Field(min_length=1)
    base_url: str = Field(
        default="https://api.twilio.com",
        pattern=HTTP_URL,
        description="a regional endpoint (https://api.dublin.ie1.twilio.com) or a test server",
    )
    status_callback_url: str | None = Field(
        default=None,
        pattern=HTTP_URL,
        description="where Twilio posts status callbacks: {public}/hooks/{workspace}/{provider}",
    )
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds for each request")


class TwilioSmsConfig(_TwilioAccount):
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    # Checked after messaging_service_sid (declared first), so a missing sender is reported
    # on this field rather than on the configuration as a whole.
    from_number: str | None = Field(default=None, pattern=E164, validate_default=True)

    @field_validator("from_number")
    @classmethod
    def _has_a_sender(cls, value: str | None, info: ValidationInfo) -> str | None:
        service_given = info.data.get("messaging_service_sid") is not None
        service_invalid = "messaging_service_sid" not in info.data  # already reported
        if value is None and not service_given and not service_invalid:
            raise ValueError("give from_number (E.164) or messaging_service_sid")
        return value


class TwilioVoiceConfig(_TwilioAccount):
    from_number: str = Field(pattern=E164)  # calls have no Messaging Service


class _TwilioAdapter:
    """What both adapters share: the HTTP client, error mapping, and status callbacks."""

    resource: ClassVar[str]  # "Messages" or "Calls"
    sid_field: ClassVar[str]  # the callback field naming the resource
    status_field: ClassVar[str]
    statuses: ClassVar[Mapping[str, str]]
    failures: ClassVar[Mapping[str, str]]  # reasons of failed statuses that carry no ErrorCode

    def __init__(self, config: _TwilioAccount) -> None:
        self.config = config
        # Built on first send: status callbacks build an adapter only to check a signature.
        self._client = LazyClient(
            config.base_url, config.timeout, auth=(config.account_sid, config.auth_token)
        )

    def _http(self) -> httpx.AsyncClient:
        return self._client.get()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _create(self, form: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """POST a new resource; its JSON on success, else the mapped delivery error."""
        path = f"/{API_VERSION}/Accounts/{self.config.account_sid}/{self.resource}.json"
        try:
            response = await self._http().post(path, data=_grouped(form))
        except httpx.TimeoutException as error:
            raise RetryLater(
                f"Twilio did not answer within {self.config.timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise RetryLater(f"cannot reach Twilio: {type(error).__name__}: {error}") from None
        if response.is_success:
            body = json_or_none(response)
            return body if isinstance(body, dict) else {}
        raise _error(response)

    def _verified(self, headers: Mapping[str, str], body: bytes, url: str) -> dict[str, str]:
        """The form Twilio posted, once its X-Twilio-Signature checks out."""
        signature = next((v for k, v in headers.items() if k.lower() == "x-twilio-signature"), None)
        try:
            params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise InvalidSignature("not a Twilio request: the body is not UTF-8") from None
        validator = RequestValidator(self.config.auth_token)
        if not signature or not validator.validate(url, params, signature):
            raise InvalidSignature()
        return params

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> Sequence[DeliveryUpdate]:
        """The delivery update of one signed status callback (none for a status not tracked).

        ``url`` is the full public URL Twilio posted to, query string included: Twilio signs
        it. Callbacks arrive out of order; the caller applies them monotonically.
        """
        params = self._verified(headers, body, url)
        sid, raw = params.get(self.sid_field), params.get(self.status_field, "")
        status = self.statuses.get(raw)
        if not sid or status is None:
            return []
        details: dict[str, Any] = {"twilio_status": raw}
        if params.get("CallDuration", "").isdigit():
            details["duration_seconds"] = int(params["CallDuration"])
        code = params.get("ErrorCode")
        if code:
            message = params.get("ErrorMessage") or DELIVERY_ERRORS.get(code, "see Twilio's docs")
            reason: str | None = f"Twilio error {code}: {message}"
        else:
            reason = self.failures.get(raw)
        return [DeliveryUpdate(sid, status, reason, details)]


class TwilioSmsAdapter(_TwilioAdapter):
    name: ClassVar[str] = "twilio_sms"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.SMS})
    capabilities: ClassVar[Capabilities] = Capabilities(max_length=1600, two_way=True)
    Config: ClassVar[type[ProviderConfig]] = TwilioSmsConfig

    resource = "Messages"
    sid_field = "MessageSid"
    status_field = "MessageStatus"

    def parse_inbound(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> Sequence[InboundMessage]:
        """An SMS someone sent to our number (Twilio's messaging webhook: a signed form with
        From, Body and SmsStatus=received); status callbacks carry none."""
        params = self._verified(headers, body, url)
        if params.get("SmsStatus") != "received" or not params.get("From"):
            return []
        return [
            InboundMessage(
                channel="sms",
                sender_id=params["From"],
                external_id=f"twilio:{params.get('MessageSid') or params.get('SmsSid')}",
                text=params.get("Body", ""),
                raw=params,
            )
        ]

    statuses = MESSAGE_STATUSES
    failures: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: TwilioSmsConfig) -> None:
        super().__init__(config)
        self.config: TwilioSmsConfig = config

    async def send(self, message: OutboundMessage) -> SendResult:
        text = _text(message)
        form = [("To", message.to), ("Body", text)]
        if self.config.messaging_service_sid:
            form.append(("MessagingServiceSid", self.config.messaging_service_sid))
        if self.config.from_number:
            form.append(("From", self.config.from_number))
        if self.config.status_callback_url:
            form.append(("StatusCallback", self.config.status_callback_url))
        created = await self._create(form)
        measured = segment(text)
        return SendResult(
            provider_message_id=created.get("sid"),
            details={"encoding": measured.encoding.value, "segments": measured.segments},
        )


class TwilioVoiceAdapter(_TwilioAdapter):
    name: ClassVar[str] = "twilio_voice"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.VOICE})
    # Basic voices read up to 4,096 characters; the inline TwiML limit may stop a text
    # shorter than that (the XML around it, and escaping, count too): see send().
    capabilities: ClassVar[Capabilities] = Capabilities(max_length=4096)
    Config: ClassVar[type[ProviderConfig]] = TwilioVoiceConfig

    resource = "Calls"
    sid_field = "CallSid"
    status_field = "CallStatus"
    statuses = CALL_STATUSES
    failures = CALL_FAILURES

    def __init__(self, config: TwilioVoiceConfig) -> None:
        super().__init__(config)
        self.config: TwilioVoiceConfig = config

    async def send(self, message: OutboundMessage) -> SendResult:
        language = say_language(message.locale)
        twiml = twiml_for(_text(message), language)
        if len(twiml) > MAX_INLINE_TWIML:
            raise PermanentFailure(
                f"the call's TwiML is {len(twiml)} characters; Twilio takes at most "
                f"{MAX_INLINE_TWIML}: shorten the text"
            )
        form = [("To", message.to), ("From", self.config.from_number), ("Twiml", twiml)]
        if self.config.status_callback_url:
            form.append(("StatusCallback", self.config.status_callback_url))
            # Without these Twilio reports only "completed"; ringing and answered show
            # progress, and busy / no-answer come with "completed" as the final status.
            form.extend(("StatusCallbackEvent", e) for e in ("ringing", "answered", "completed"))
        created = await self._create(form)
        return SendResult(provider_message_id=created.get("sid"), details={"language": language})


def say_language(locale: str | None) -> str:
    """The ``<Say>`` language for a locale: ``fr-CA`` stays, ``fr`` and ``fr-BE`` become
    ``fr-FR``, a language Twilio does not speak becomes ``en-US``."""
    if not locale:
        return DEFAULT_SAY_LANGUAGE
    parts = locale.replace("_", "-").split("-")
    language = parts[0].lower()
    regions = [p.upper() for p in parts[1:] if len(p) == 2 and p.isalpha()]
    if regions and f"{language}-{regions[0]}" in SAY_LANGUAGES:
        return f"{language}-{regions[0]}"
    return DEFAULT_SAY_REGION.get(language, DEFAULT_SAY_LANGUAGE)


def twiml_for(text: str, language: str) -> str:
    response = VoiceResponse()
    response.say(text, language=language)
    return str(response)


def _text(message: OutboundMessage) -> str:
    text = message.content.get("text")
    if not isinstance(text, str) or not text:
        raise PermanentFailure(f"a {message.channel.value} message needs content.text")
    return text


def _grouped(form: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form pairs as httpx takes them: a repeated key (StatusCallbackEvent) as a list."""
    grouped: dict[str, str | list[str]] = {}
    for key, value in form:
        if key in grouped:
            earlier = grouped[key]
            grouped[key] = [*earlier, value] if isinstance(earlier, list) else [earlier, value]
        else:
            grouped[key] = value
    return grouped


def _error(response: httpx.Response) -> DeliveryError:
    parsed = json_or_none(response)
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    code: int | None = body["code"] if isinstance(body.get("code"), int) else None
    message = str(body.get("message") or response.reason_phrase or "no message")
    status = response.status_code
    reason = f"{message} (HTTP {status})"
    if code is not None:
        reason = f"Twilio error {code}: {reason}"
    if code is not None and code in ADDRESS_ERRORS:
        return AddressInvalid(reason, ADDRESS_ERRORS[code])
    if status == 429 or code == RATE_LIMITED or status >= 500:
        return RetryLater(reason, retry_after(response))
    if code == 20003:
        reason += "; check the account_sid and auth_token of this provider"
    return PermanentFailure(reason)
