"""The dev capture provider: stands in for every channel and sends nothing.

The message row itself is the capture: the dev inbox shows what each contact would have
received. It is the default provider of the embedded set-up, and it is idempotent (a resend
after a crash changes nothing), so it never causes a duplicate.
"""

from __future__ import annotations

from typing import ClassVar

from junction.channels.base import (
    Capabilities,
    Channel,
    OutboundMessage,
    ProviderConfig,
    SendResult,
)


class CaptureConfig(ProviderConfig):
    pass


class CaptureAdapter:
    name: ClassVar[str] = "capture"
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    capabilities: ClassVar[Capabilities] = Capabilities(
        subject=True, rich_media=True, buttons=True, idempotent=True
    )
    Config: ClassVar[type[ProviderConfig]] = CaptureConfig

    def __init__(self, config: CaptureConfig | None = None) -> None:
        self.config = config or CaptureConfig()

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"capture-{message.id}")

    async def aclose(self) -> None:
        return None
