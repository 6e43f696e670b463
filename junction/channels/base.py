"""The adapter protocol: what every provider module provides, and the three ways a send fails.

An adapter describes itself with class attributes (``name``, ``channels``, ``capabilities``,
``Config``), takes its validated per-workspace ``Config`` when built, and sends with
``send()``. A send either returns a :class:`SendResult` or raises one of:

    DeliveryError                 a send did not go out
    ├── RetryLater                a passing problem (rate limit, outage, timeout); try again,
    │                             no sooner than ``retry_after`` seconds when the provider said
    ├── PermanentFailure          this message will never go out as it is; do not retry
    └── AddressInvalid            the address is dead: do not retry, and mark the address with
                                  ``status`` (invalid, bounced or unsubscribed)

Each adapter translates its provider's errors into these at its boundary, so nothing above it
knows a provider's error codes. Providers that call back (delivery receipts, bounces, replies)
also implement ``parse_webhook()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    VOICE = "voice"
    PUSH = "push"
    WEB_PUSH = "web_push"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    IN_APP = "in_app"
    CONTENT_CARD = "content_card"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can carry; checked before a message is accepted for it."""

    max_length: int | None = None  # characters of body text (SMS: of the whole message)
    subject: bool = False
    rich_media: bool = False
    buttons: bool = False
    two_way: bool = False
    opt_in_required: bool = False
    session_window_hours: int | None = None  # chat apps: free text only inside the window
    cost_per_message: Mapping[str, float] = field(default_factory=dict)  # country → USD
    # Whether resending after a crash mid-send is safe: the provider deduplicates on our
    # idempotency key, or the receiver does (the capture and webhook adapters).
    idempotent: bool = False


class ProviderConfig(BaseModel):
    """Base of every adapter's configuration schema: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")

    # The provider's rate limit for this workspace: the dispatcher paces sends to it.
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)
    burst: int = Field(default=1, ge=1, le=10_000)

    # Field names whose values are secret: never returned by the API in clear.
    secret_fields: ClassVar[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message, rendered and addressed, ready for a provider."""

    id: int
    idempotency_key: str
    workspace_id: int
    channel: Channel
    to: str
    content: Mapping[str, Any]
    transactional: bool = True
    contact_id: int | None = None
    locale: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # segments, encoding, cost…


class DeliveryError(Exception):
    """A send did not go out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(DeliveryError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    pass


class AddressInvalid(DeliveryError):
    def __init__(self, reason: str, status: str = "invalid") -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """What a provider's callback says about one message."""

    provider_message_id: str
    status: str  # queued, sent, delivered, failed, bounced, opened, clicked, read
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a person sent us, on any two-way channel, in one shape."""

    channel: str  # "sms", "telegram", "whatsapp", "messenger"
    sender_id: str  # their address on that channel: E.164 phone, chat id, PSID
    external_id: str  # the provider's id for this message: inbound deduplicates on it
    text: str
    sent_at: datetime | None = None  # when the provider says it was sent, if it says
    sender_name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    name: ClassVar[str]
    channels: ClassVar[frozenset[Channel]]
    capabilities: ClassVar[Capabilities]
    Config: ClassVar[type[ProviderConfig]]

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Receiving(Protocol):
    """An adapter whose provider forwards what people send (a two-way channel). It checks
    the request's signature, raising ``InvalidSignature``, and refuses junk with
    ``MalformedBody``; a request that carries no message gives an empty list."""

    def parse_inbound(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> Sequence[InboundMessage]: ...


@runtime_checkable
class Subscribing(Protocol):
    """An adapter whose provider checks the webhook URL before using it (Meta's GET
    handshake): returns the challenge to echo, or raises ``InvalidSignature``."""

    def verify_subscription(self, params: Mapping[str, str]) -> str: ...


@runtime_checkable
class CallingBack(Protocol):
    """An adapter whose provider calls back with delivery updates."""

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> Sequence[DeliveryUpdate]: ...
