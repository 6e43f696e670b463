"""A scripted in-memory adapter for tests and demos: it answers each send with the next
outcome of its script (a result, or one of the delivery errors) and keeps what it sent."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from junction.channels.base import (
    Capabilities,
    Channel,
    DeliveryError,
    OutboundMessage,
    ProviderConfig,
    SendResult,
)


class FakeConfig(ProviderConfig):
    pass


class FakeAdapter:
    name: ClassVar[str] = "fake"
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    capabilities: ClassVar[Capabilities] = Capabilities(subject=True)
    Config: ClassVar[type[ProviderConfig]] = FakeConfig

    def __init__(self, script: Iterable[SendResult | DeliveryError] = ()) -> None:
        self.script: deque[SendResult | DeliveryError] = deque(script)
        self.sent: list[OutboundMessage] = []
        self.attempts: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.attempts.append(message)
        outcome = self.script.popleft() if self.script else SendResult(f"fake-{message.id}")
        if isinstance(outcome, DeliveryError):
            raise outcome
        self.sent.append(message)
        return outcome

    async def aclose(self) -> None:
        return None
